"""Analysis tools: complexity (parameters, FLOPs), peak memory."""

from nlgc.analysis.complexity import Complexity, complexity, count_flops
from nlgc.analysis.memory import peak_memory_bytes

__all__ = ["Complexity", "complexity", "count_flops", "peak_memory_bytes"]
