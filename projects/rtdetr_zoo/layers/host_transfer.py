"""Host-to-device copies that do not stall the host."""
import torch


def host_to_device(tensor: torch.Tensor,
                   device: torch.device) -> torch.Tensor:
    """``tensor`` (on the host) on ``device``.

    A plain ``.to('cuda')`` of pageable memory waits until the GPU has
    finished all queued work; a copy from page-locked memory with
    ``non_blocking=True`` is queued like a kernel (PyTorch's pinned-memory
    allocator keeps the host buffer alive until the copy is done). On a CPU
    device this is ``tensor`` itself.
    """
    if device.type == 'cuda':
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
