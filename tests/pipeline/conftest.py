import pytest

from glue_jobs.pipeline import configure
from glue_jobs.voucher_selection_job import local_session


@pytest.fixture(scope="session")
def spark():
    """One real Spark local-mode session for the whole test run, configured like the job's."""
    session = local_session()
    session.sparkContext.setLogLevel("ERROR")
    configure(session)
    yield session
    session.stop()
