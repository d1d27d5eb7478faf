"""The LangGraph loop: config, state, dependencies, builder, checkpointing and runner."""
