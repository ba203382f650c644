import pytest

from services.core.problems import Problem


def test_a_problem_cannot_overwrite_its_own_members() -> None:
    with pytest.raises(ValueError, match="title"):
        Problem(409, "round_not_open", title="closed")
    with pytest.raises(ValueError, match="type"):
        Problem(409, "round_not_open", type="x")
    assert Problem(409, "round_not_open", round_status="closed").extra == {"round_status": "closed"}
