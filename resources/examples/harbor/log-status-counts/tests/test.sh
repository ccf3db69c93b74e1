#!/bin/bash
# Harbor's verifier: runs in the task's working directory, writes its reward to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ -f status_counts.txt ] && diff -u /tests/expected.txt status_counts.txt; then
  echo 1 > /logs/verifier/reward.txt
else
  echo "status_counts.txt is missing or differs from the expected counts"
  echo 0 > /logs/verifier/reward.txt
fi
