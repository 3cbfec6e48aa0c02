"""The compiled kernels (``src/rastalign/_kernels/_*.pyx``), built by setuptools with Cython; everything else
is declared in pyproject.toml. Cython is a build requirement only: the extensions use typed memoryviews, not
numpy's C API, so one build works with every numpy the package supports."""
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["_warp", "_prefilter", "_bspline", "_field", "_convert", "_blocks", "_neighbours"]
HEADERS = ["_compat.h", "_weights.h", "_rows.h", "_fir.h", "_lk.h"]
DIRECTIVES = {"language_level": 3, "boundscheck": False, "wraparound": False, "initializedcheck": False,
              "cdivision": True, "embedsignature": True}


class BuildExt(build_ext):
    """Optimised, and no contraction of a * b + c into one fused multiply-add: the kernels' results must not
    depend on the machine (an FMA rounds once, so its bits differ from the written order's)."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2", "/fp:precise"]
        else:
            flags = ["-O3", "-ffp-contract=off", "-g0"]  # no debug info: a fifth of the size
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args or [])
        super().build_extensions()


extensions = [Extension(f"rastalign._kernels.{name}", [f"src/rastalign/_kernels/{name}.pyx"],
                        depends=[f"src/rastalign/_kernels/{h}" for h in HEADERS])
              for name in KERNELS]
setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES), cmdclass={"build_ext": BuildExt})
