"""The union of the matches of all layers (D-FINE's GO-LSD matching set,
official ``DEIMCriterion._get_go_indices``); rtdetr_zoo.task_modules.
match_union's docstring says how it compares with the official function."""
import pytest
import torch

from rtdetr_zoo.task_modules import union_of_matches


def test_each_query_keeps_its_most_frequent_ground_truth():
    """Three matchings of a batch of two images (queries 0-4 in image 0,
    5-9 in image 1; ground truths 0-1 and 2-3): query 1 is matched to gt 0
    twice and to gt 1 once, so it keeps gt 0; query 3 is matched once, by
    one layer only, and is in the union; queries 4 (gt 1 and gt 0) and 6
    (gt 2 and gt 3) have ties and take the lower index; query 8 keeps gt
    3 (twice against once)."""
    query_index = torch.tensor([[1, 4, 6, 8],
                                [1, 3, 6, 8],
                                [4, 1, 9, 8]])
    gt_index = torch.tensor([[0, 1, 2, 3],
                             [0, 1, 3, 2],
                             [0, 1, 2, 3]])
    queries, gts = union_of_matches(query_index, gt_index)
    assert queries.tolist() == [1, 3, 4, 6, 8, 9]
    assert gts.tolist() == [0, 1, 0, 2, 3, 2]


def test_one_matching_is_its_own_union_and_empty_is_empty():
    query_index = torch.tensor([7, 2, 5])
    gt_index = torch.tensor([0, 2, 1])
    queries, gts = union_of_matches(query_index, gt_index)
    assert queries.tolist() == [2, 5, 7] and gts.tolist() == [2, 1, 0]
    empty = torch.zeros((3, 0), dtype=torch.long)
    queries, gts = union_of_matches(empty, empty)
    assert queries.numel() == 0 and gts.numel() == 0
    with pytest.raises(ValueError, match='differ'):
        union_of_matches(torch.zeros(2, 3), torch.zeros(2, 4))
