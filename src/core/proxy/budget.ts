/** Which budget ended a run: the agent's LLM calls, or the tokens they used (prompt + completion). */
export type BudgetName = 'max_llm_calls' | 'max_total_tokens';

export interface BudgetLimits {
  /** LLM calls the agent may make; the next one gets a final answer instead. */
  maxLlmCalls?: number | null;
  /** Tokens (the upstream's usage, prompt + completion) the agent's calls may use; past it, the next call gets a final answer. */
  maxTotalTokens?: number | null;
}

/**
 * A rollout's LLM budget, kept by the proxy. Only the agent's own calls count (not opencode's title calls): a budget
 * is about the policy's work. A run that stops on its own within its budget is not "ended by the budget", even if it
 * used all of it: the budget ends a run only when a call past it is refused.
 */
export class RolloutBudget {
  calls = 0;
  tokens = 0;
  /** Set when a call was refused for the budget: which one. */
  ended: BudgetName | null = null;

  constructor(private readonly limits: BudgetLimits) {}

  /** Whether any limit is set (without one, the proxy need not read a relayed request at all). */
  get limited(): boolean {
    return this.limits.maxLlmCalls != null || this.limits.maxTotalTokens != null;
  }

  /** An agent call is about to go upstream: counted and allowed, or (false) refused because a budget is used up. */
  admit(): boolean {
    const over: BudgetName | null =
      this.limits.maxLlmCalls != null && this.calls >= this.limits.maxLlmCalls
        ? 'max_llm_calls'
        : this.limits.maxTotalTokens != null && this.tokens >= this.limits.maxTotalTokens
          ? 'max_total_tokens'
          : null;
    if (over) {
      this.ended ??= over;
      return false;
    }
    this.calls += 1;
    return true;
  }

  /** An agent call's answer came: its usage counts toward the token budget. */
  record(usage: Record<string, unknown> | null): void {
    const total = Number(usage?.total_tokens ?? Number(usage?.prompt_tokens ?? 0) + Number(usage?.completion_tokens ?? 0));
    if (Number.isFinite(total) && total > 0) this.tokens += total;
  }

  /** What the agent is told in the final answer that ends its run. */
  message(): string {
    return this.ended === 'max_total_tokens'
      ? `[opencode-env] this run's token budget (max_total_tokens = ${this.limits.maxTotalTokens}) is used up (${this.tokens} tokens). Stop here.`
      : `[opencode-env] this run's budget of LLM calls (max_llm_calls = ${this.limits.maxLlmCalls}) is used up. Stop here.`;
  }
}
