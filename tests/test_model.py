import math

import torch
import torch.nn.functional as F

from lenet.model import LeNet5, count_parameters


def test_output_shape_is_batch_by_ten_logits():
    assert LeNet5()(torch.randn(7, 1, 28, 28)).shape == (7, 10)


def test_parameter_count_matches_lenet5():
    assert count_parameters(LeNet5()) == 61_706


def test_kaiming_normal_initialisation():
    torch.manual_seed(0)
    model = LeNet5()
    expected = math.sqrt(2 / 400)  # He et al.: std = sqrt(2 / fan_in) for fc1's 400 inputs
    assert abs(model.fc1.weight.std().item() - expected) / expected < 0.05
    assert all(torch.count_nonzero(m.bias) == 0 for m in (model.conv1, model.conv2, model.fc1, model.fc2, model.fc3))


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = LeNet5()
    images, labels = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = F.cross_entropy(model(images), labels).item()
    for _ in range(150):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01 * first
    assert (model(images).argmax(1) == labels).all()


def test_pooling_before_relu_equals_the_textbook_order():
    torch.manual_seed(0)
    model, x = LeNet5(), torch.randn(4, 1, 28, 28)
    h = F.max_pool2d(F.relu(model.conv1(x)), 2)
    h = F.max_pool2d(F.relu(model.conv2(h)), 2)
    textbook = model.fc3(F.relu(model.fc2(F.relu(model.fc1(torch.flatten(h, 1))))))
    assert torch.allclose(model(x), textbook, atol=1e-6)
