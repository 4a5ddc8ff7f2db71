"""samplax benchmarks: one module per topic (`main(out_dir, quick=False)` writes `<topic>.md`); `benchmarks.run`
runs them and writes the index. Shared helpers live in `benchmarks.common`."""
