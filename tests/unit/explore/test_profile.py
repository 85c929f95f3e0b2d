"""Which input the profile reads by default and how its report files are named."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from explore.inputs import default_source
from explore.report import report_name


def test_the_default_input_is_the_real_file_else_a_generated_sample(tmp_path):
    real = tmp_path / "voucher_history.parquet.gzip"
    sample = default_source(tmp_path / "reports", real_file=real, rows=1_000, seed=5)
    assert sample == str(tmp_path / "reports" / "sample_1000_seed5.parquet.gzip")
    footer = pq.ParquetFile(sample).metadata
    assert footer.num_rows == 1_000
    assert footer.row_group(0).column(0).compression == "GZIP"
    made = (tmp_path / "reports" / "sample_1000_seed5.parquet.gzip").stat().st_mtime_ns
    assert default_source(tmp_path / "reports", real_file=real, rows=1_000, seed=5) == sample
    assert (tmp_path / "reports" / "sample_1000_seed5.parquet.gzip").stat().st_mtime_ns == made
    real.write_bytes(b"")
    assert default_source(tmp_path / "reports", real_file=real) == str(real)


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("../shared/data/voucher_history.parquet.gzip", "eda_voucher_history"),
        ("s3://voucher-raw/incoming/2018.parquet", "eda_2018"),
        ("s3://voucher-raw/incoming/", "eda_incoming"),
        ("/data/part.snappy.parquet", "eda_part"),
    ],
)
def test_report_files_are_named_after_the_input(source, name):
    assert report_name(source) == name
