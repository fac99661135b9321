"""The data splits: training and tuning never see a test or reserved package."""

from __future__ import annotations

import pytest

from corpus.splits import RESERVED_PACKAGES, TEST_PACKAGES, SplitError, require, split_of
from training import evaluate, sources


def test_training_draws_from_tuning_packages_only() -> None:
    assert {split_of(package) for package in sources.training_packages()} == {"tune"}


@pytest.mark.parametrize(
    "package",
    ["asterisk-core-sounds-fr-g722", "asterisk-core-sounds-ru-wav", "colobot-common-sounds", "pingus-data",
     "drascula-music", "fillets-ng-data-cs", "asterisk-prompt-it-menardi-wav", "warzone2100-music"],
)
def test_test_and_reserved_packages_are_refused_for_tuning(package: str) -> None:
    with pytest.raises(SplitError, match=package):
        require(("flite", package), "tune")


def test_a_package_without_a_split_is_refused_everywhere() -> None:
    assert split_of("some-new-sounds") is None
    for split in ("tune", "test", "reserved"):
        with pytest.raises(SplitError, match="some-new-sounds"):
            require(("some-new-sounds",), split)


def test_no_pattern_is_in_two_splits() -> None:
    for pattern in TEST_PACKAGES + RESERVED_PACKAGES:
        split_of(pattern.replace("*", "x"))  # raises SplitError if a name matched two splits


def test_the_final_evaluation_draws_from_reserved_packages_only() -> None:
    require(tuple(evaluate.EVAL_PACKAGES), "reserved")
