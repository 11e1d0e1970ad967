export {
  createApiServer,
  EDGE_DEFAULTS,
  UNMATCHED_ROUTE,
  type ApiServer,
  type ApiServerOptions,
  type EdgeOptions,
} from './server';
export { parseKeyFile } from './auth';
export { silentLogger, type Logger } from './deps';
export { defaultToolCallParser, TOOL_CALL_PARSERS, type ToolCallParserName } from './tool-calls';
