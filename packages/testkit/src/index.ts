export { REPO_ROOT, cacheDir, ensureTinyModel } from '@pdserve/model';
