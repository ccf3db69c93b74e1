import type { Case } from '../harness.js';
import { argumentCases } from './arguments.js';
import { containmentCases } from './containment.js';
import { failureCases } from './failures.js';
import { httpCases } from './http.js';
import { keyCases } from './keys.js';
import { pythonCases } from './python.js';
import { rewardCases } from './reward.js';
import { traceCases } from './traces.js';

/** Every case, in table order (the ids follow issue 7's list; 17 covers its weaker spots). */
export const cases: Case[] = [
  ...keyCases,
  ...rewardCases,
  ...traceCases,
  ...pythonCases,
  ...containmentCases,
  ...argumentCases,
  ...failureCases,
  ...httpCases,
].sort((a, b) => parseFloat(a.id) - parseFloat(b.id) || a.id.localeCompare(b.id));
