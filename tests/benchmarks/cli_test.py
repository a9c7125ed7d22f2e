"""benchmarks.cli.cpu_description: the CPU model and the SIMD features a result names."""

from benchmarks import cli

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme sse sse2 popcnt avx avx2 fma bmi2
"""
XEON = """model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: avx avx2 avx512f avx512_vpopcntdq avx512_vnni avx512_bf16 amx_tile amx_int8
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes sve
"""


def test_cpu_description_names_the_model_and_its_simd_features():
  assert cli.cpu_description(EPYC) == "AMD EPYC (avx2)"
  assert cli.cpu_description(XEON) == (
      "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (avx2, avx512f, avx512_vpopcntdq, "
      "avx512_vnni, avx512_bf16, amx_tile, amx_int8)")
  assert cli.cpu_description(ARM).endswith("(asimd, sve)")
  assert cli.cpu_description("").endswith("(no AVX2)")
  assert cli.cpu_description()  # this machine's, whatever it is
