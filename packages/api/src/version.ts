// The pdserve release /version reports (every workspace package carries the same version, as
// pdserve_build_info reports it from the metrics package).
import apiPackage from '../package.json' with { type: 'json' };

export const PDSERVE_VERSION: string = apiPackage.version;
