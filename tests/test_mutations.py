"""bench/mutants breaks the code on purpose, one way per guarantee: every mutation must still apply
to the code as it is, or the table would prove nothing about it."""

from bench import mutations


def test_every_mutation_still_applies_to_the_code():
    assert mutations.check() == []
    assert len(mutations.MUTATIONS) >= 14
