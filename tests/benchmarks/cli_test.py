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


def test_parse_args_bool_fields_and_config_main(tmp_path):
  import dataclasses
  import json

  @dataclasses.dataclass
  class Config:
    n: int = 3
    name: str = "a"
    fast: bool = True

  assert cli.parse_args(Config, [], description="d") == (Config(), "benchmarks/results")
  cfg, out = cli.parse_args(Config, ["--n=5", "--no-fast", "--out=x"], description="d")
  assert (cfg, out) == (Config(n=5, fast=False), "x")
  assert cli.parse_args(Config, ["--fast"], description="d")[0].fast is True

  def run(cfg, command):
    return {"platform": "cpu", "n": cfg.n, "command": command}
  r = cli.config_main("benchmarks.toy", Config, ["--n=7", f"--out={tmp_path}"],
                      doc="Toy.\nmore", results_name="toy", run_benchmark=run,
                      format_markdown=lambda r: f"n={r['n']}\n")
  assert r["command"] == f"python -m benchmarks.toy --n=7 --out={tmp_path}"
  assert json.loads((tmp_path / "toy_cpu.json").read_text())["n"] == 7
  assert (tmp_path / "toy_cpu.md").read_text() == "n=7\n"
