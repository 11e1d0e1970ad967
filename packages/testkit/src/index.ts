export { REPO_ROOT, cacheDir, ensureTinyModel } from '@pdserve/model';
export { freePort, startNats, startRedis, type TestServer } from './servers';
export { completion } from './text';
export { JSON_SCHEMA_CASES } from './schemas';
export { spawnService, waitFor, type ServiceProcess } from './cluster';
export {
  CHROMIUM_ARGS,
  CHROMIUM_BINARY,
  chartSizes,
  launchChromium,
  type HeadlessChromium,
  type PageProblems,
  type WatchedPage,
} from './chromium';
