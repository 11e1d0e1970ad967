export { buildTinyModel, EXTERNAL_DATA_THRESHOLD_BYTES } from './build';
export { draftPair, PRESETS, type PresetName, type TinyModelOptions } from './options';
export { QUANTIZATIONS, type Quantization } from './quantize';
