import os
import random
import statistics
import sys

sys.path.insert(0, os.getcwd())
from stats import median  # noqa: E402

cases = [[1], [3, 1, 2], [4, 1, 3, 2], [5, 5, 1], [-1.5, 2.5], [10, 2, 38, 23, 38, 23, 21]]
rng = random.Random(int(os.environ["STATS_TEST_SEED"]))
cases += [[rng.randint(-50, 50) for _ in range(rng.randint(1, 12))] for _ in range(50)]
for case in cases:
    given = list(case)
    got = median(given)
    assert got == statistics.median(case), f"median({case}) returned {got}, expected {statistics.median(case)}"
    assert given == case, f"median modified its argument: {case} became {given}"
print(f"{len(cases)} cases passed")
