"""Quality gates of the verifier: task membership, no regurgitation, no meta text, novelty (issue #12)."""
