"""Per-dataset namespaces: telco keeps today's names, every other dataset gets its own."""

import pytest

from schemas.namespace import DEFAULT_DATASET, Namespace
from schemas.registry import CLASSIFIER_NAME, REGRESSOR_NAME
from schemas.topics import Topics


def test_default_dataset_keeps_the_historical_names() -> None:
    ns = Namespace.for_dataset(DEFAULT_DATASET)
    assert ns.topics() == Topics.all()
    assert ns.registered_models() == (CLASSIFIER_NAME, REGRESSOR_NAME)
    assert ns.consumer_group == "churn-scorer"


def test_other_datasets_share_no_name_with_telco_or_each_other() -> None:
    telco, retail, bank = (Namespace.for_dataset(d) for d in ("telco", "retail", "bank_churn"))
    assert retail.customers == "retail.customers"
    assert retail.classifier_name == "retail-churn-classifier"
    assert retail.consumer_group == "churn-scorer-retail"
    names = [set(n.topics()) | set(n.registered_models()) | {n.consumer_group} for n in (telco, retail, bank)]
    assert not names[0] & names[1] and not names[0] & names[2] and not names[1] & names[2]


def test_base_group_is_the_configured_one() -> None:
    assert Namespace.for_dataset("retail", base_group="scorers").consumer_group == "scorers-retail"
    assert Namespace.for_dataset("telco", base_group="scorers").consumer_group == "scorers"


@pytest.mark.parametrize("bad", ["", "Retail", "my data", "../x", "a" * 41, "9lives"])
def test_invalid_names_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="dataset: expected a name"):
        Namespace.for_dataset(bad)
