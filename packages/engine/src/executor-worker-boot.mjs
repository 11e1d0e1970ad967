// Worker threads do not inherit the TypeScript loader, so the model thread registers it itself.
import { register } from 'tsx/esm/api';

register();
await import('./executor-worker.ts');
