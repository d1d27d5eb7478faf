"""fac: small, diverse post-training datasets by Feature Activation Coverage (arXiv 2602.10388).

The Python API (see fac/api.py and the README's "Python API" section): load_space, score, coverage,
load_catalog, build_catalog, synthesize, resume, with Goals, SpaceSpec, RayOptions and SynthesisResult.
"""

from fac.api import (
    Goals,
    RayOptions,
    SpaceSpec,
    SynthesisResult,
    as_samples,
    build_catalog,
    coverage,
    load_catalog,
    load_space,
    resume,
    score,
    synthesize,
)

__version__ = "0.1.0"
__all__ = ["Goals", "RayOptions", "SpaceSpec", "SynthesisResult", "__version__", "as_samples", "build_catalog",
           "coverage", "load_catalog", "load_space", "resume", "score", "synthesize"]
