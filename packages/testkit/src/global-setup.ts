import { ensureTinyModel } from '@pdserve/model';

// Builds the default tiny model once per test run so that parallel test files share it.
export default async function setup(): Promise<void> {
  await ensureTinyModel();
}
