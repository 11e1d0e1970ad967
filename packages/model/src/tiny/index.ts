export { buildTinyModel, EXTERNAL_DATA_THRESHOLD_BYTES } from './build';
export type { TinyModelOptions } from './options';
