export { REPO_ROOT, cacheDir, ensureTinyModel } from '@pdserve/model';
export { freePort, startNats, startRedis, type TestServer } from './servers';
export { completion } from './text';
export { JSON_SCHEMA_CASES } from './schemas';
export { spawnService, waitFor, type ServiceProcess } from './cluster';
