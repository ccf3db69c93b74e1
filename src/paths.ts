import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The installed package's root (one level above src/ or dist/), where resources/ lives. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const resourcesDir = path.join(packageRoot, 'resources');
