"""Analysis tools: complexity (parameters, FLOPs), peak memory, GCNet's query statistics."""

from nlgc.analysis.complexity import Complexity, complexity, count_flops
from nlgc.analysis.memory import peak_memory_bytes
from nlgc.analysis.statistics import QueryDistances, query_distances

__all__ = [
    "Complexity",
    "QueryDistances",
    "complexity",
    "count_flops",
    "peak_memory_bytes",
    "query_distances",
]
