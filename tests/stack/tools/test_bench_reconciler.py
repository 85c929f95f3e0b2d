"""The reconciler benchmark on a small bucket: a tick over files and dataset folders that all have
their run repairs nothing, lists everything in one page and asks S3 once about uploads in
progress."""

from __future__ import annotations

from benchmarks import bench_reconciler


def test_a_tick_over_what_is_all_accounted_for_repairs_nothing(local_stack):
    result = bench_reconciler.measure(300)  # asserts, tick by tick, that nothing was taken in
    assert result["ticks_to_list_all"] == 1
    assert result["s3_requests_per_tick"] == {"ListObjectsV2": 1, "ListMultipartUploads": 1}
    assert "| 300 | 1 |" in bench_reconciler.markdown(
        [result], {"cores": 2, "cpu": "x", "python": "3.11"}
    )
