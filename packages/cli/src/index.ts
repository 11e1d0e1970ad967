export { runCli } from './run';
