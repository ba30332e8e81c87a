import os

import pytest

# Tests run on 2-core machines next to other work: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    from synthetic import make_data_dir
    return make_data_dir(tmp_path_factory.mktemp("synthetic") / "data")
