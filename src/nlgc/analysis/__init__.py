"""Analysis tools: complexity (parameters, FLOPs)."""

from nlgc.analysis.complexity import Complexity, complexity, count_flops

__all__ = ["Complexity", "complexity", "count_flops"]
