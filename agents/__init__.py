"""Agent nodes (planner, generator, verifier), their routers and LLM output schemas."""
