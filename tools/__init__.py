"""Feature-space tools: model + SAE scoring, datasets, coverage, catalog, stores. No langgraph here."""
