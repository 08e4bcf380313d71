"""A software prefetch for compiled kernels: ``prefetch(a, i, j)`` asks the CPU to bring the
cache line of ``a[i, j]`` (a 2-D array) towards its caches, for writing, and returns at once.

numba has no prefetch of its own; this emits LLVM's ``llvm.prefetch`` intrinsic (an x86
``prefetchw``/``prefetcht0``, an AArch64 ``prfm``; a no-op where the target has none). It
never faults, so an index past the row's end costs nothing but a wasted hint; callers pass
in-range indices anyway. Used where a kernel visits each row's state once per call and the
rows' lines are too far apart for the hardware prefetchers (docs/benchmarks.md §1).
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
cgutils: Any = _cgutils  # (numba's code-generation helpers are untyped)


def _prefetch(typingctx: Any, arr: Any, i: Any, j: Any) -> Any:  # pragma: no cover - compiled
    if not isinstance(arr, types.Array) or arr.ndim != 2:
        return None
    sig = types.void(arr, i, j)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[k + 1], signature.args[k + 1], types.intp) for k in range(2)]
        ptr = cgutils.get_item_pointer2(context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
                                        strides=cgutils.unpack_tuple(builder, ary.strides), layout=aryty.layout,
                                        inds=idx)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # (address, rw = 1: for writing, locality = 3: keep in every level, cache type = 1: data)
        builder.call(fn, [builder.bitcast(ptr, cgutils.voidptr_t), ir.Constant(_I32, 1), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return sig, codegen


prefetch: Any = intrinsic(_prefetch)  # called in compiled code as ``prefetch(a, i, j)``
