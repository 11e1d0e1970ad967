export { REPO_ROOT, cacheDir, ensureTinyModel } from '@pdserve/model';
export { freePort, startNats, startRedis } from './servers';
export { completion } from './text';
