"""2x2 and 4x4 tap sums with vector loads (LLVM IR through numba's ``intrinsic``: numba leaves LLVM's
SLP vectoriser off, and the loop vectoriser does not take gathers).

``cols4(p, i, bw, v0..v3, w0..w3)``: the taps ``p[i + jj * bw + ii]`` (``jj, ii < 4``) summed
columns first, ``c_ii = ((v0 t_0ii + v1 t_1ii) + v2 t_2ii) + v3 t_3ii``, then
``((w0 c_0 + w1 c_1) + w2 c_2) + w3 c_3``: each row of taps is one 4-wide load widened to
float64 and the columns are summed four at a time, in the same order and with the same
products as the scalar loop of :func:`rastalign._kernels.resample._generic`, so the bits agree.
``cols2``: the same for 2 x 2 taps. ``p`` is one band, flat (C order, any numeric type).
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _widen(builder, vec, dtype, n):
    dbl = ir.VectorType(ir.DoubleType(), n)
    if isinstance(dtype, types.Float):
        return vec if dtype.bitwidth == 64 else builder.fpext(vec, dbl)
    return builder.sitofp(vec, dbl) if dtype.signed else builder.uitofp(vec, dbl)


def _splat(builder, x, n):
    vec = ir.Constant(ir.VectorType(ir.DoubleType(), n), ir.Undefined)
    for k in range(n):
        vec = builder.insert_element(vec, x, ir.Constant(ir.IntType(32), k))
    return vec


def _codegen(n):
    def codegen(context, builder, signature, args):
        arr, idx, stride = args[0], args[1], args[2]
        vs, ws = args[3:3 + n], args[3 + n:3 + 2 * n]
        dtype = signature.args[0].dtype
        data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=arr).data
        vty = ir.VectorType(context.get_data_type(dtype), n).as_pointer()
        acc = None
        for jj in range(n):  # column sums, n at a time: acc = ((v0 row0 + v1 row1) + ...)
            off = builder.add(idx, builder.mul(stride, ir.Constant(ir.IntType(64), jj)))
            ptr = builder.bitcast(builder.gep(data, [off]), vty)
            row = _widen(builder, builder.load(ptr, align=dtype.bitwidth // 8), dtype, n)
            prod = builder.fmul(row, _splat(builder, vs[jj], n))
            acc = prod if acc is None else builder.fadd(acc, prod)
        wv = ir.Constant(ir.VectorType(ir.DoubleType(), n), ir.Undefined)
        for k in range(n):
            wv = builder.insert_element(wv, ws[k], ir.Constant(ir.IntType(32), k))
        fin = builder.fmul(acc, wv)
        s = builder.extract_element(fin, ir.Constant(ir.IntType(32), 0))
        for k in range(1, n):  # the row of column sums, left to right
            s = builder.fadd(s, builder.extract_element(fin, ir.Constant(ir.IntType(32), k)))
        return s

    return codegen


def _signature(p, n):
    if not (isinstance(p, types.Array) and p.ndim == 1 and p.layout == "C"):
        return None
    return types.float64(p, types.uint64, types.uint64, *(types.float64,) * (2 * n))


@intrinsic
def cols2(typingctx, p, i, bw, v0, v1, w0, w1):
    return _signature(p, 2), _codegen(2)


@intrinsic
def cols4(typingctx, p, i, bw, v0, v1, v2, v3, w0, w1, w2, w3):
    return _signature(p, 4), _codegen(4)
