#!/bin/bash
# Harbor's verifier: runs in the task's working directory, writes its reward to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if python3 /tests/test_stats.py; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
