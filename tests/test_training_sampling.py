"""LengthGroupedBatches: every row once per epoch, rows of similar length together, reproducible."""
import torch

from plmkit.training import LengthGroupedBatches


def test_every_row_once_and_a_whole_pool_sorts_into_runs_of_equal_length():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11]
    sampler = LengthGroupedBatches(lengths, batch_size=3, generator=torch.Generator().manual_seed(0), pool=10)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    assert sorted(i for b in batches for i in b) == list(range(11))
    # One pool holds every row: the batches are the lengths sorted longest first, cut by 3.
    got = sorted(sorted(lengths[i] for i in b) for b in batches)
    assert got == sorted([[9, 10, 11], [6, 7, 8], [3, 4, 5], [1, 2]])


def test_padding_is_lower_than_random_batches():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 500, (2000,), generator=g).tolist()
    padded = lambda batches: sum(max(lengths[i] for i in b) * len(b) for b in batches)  # noqa: E731
    grouped = list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(0)))
    random_batches = torch.randperm(2000, generator=g).split(32)
    assert padded(grouped) < 0.6 * padded([b.tolist() for b in random_batches])


def test_same_generator_state_same_batches_and_epochs_differ():
    lengths = list(range(100))
    g = torch.Generator().manual_seed(3)
    sampler = LengthGroupedBatches(lengths, 8, g, pool=2)
    state = g.get_state()
    first = list(sampler)
    second = list(sampler)
    g.set_state(state)  # what the Trainer does on resume
    assert list(sampler) == first and first != second
