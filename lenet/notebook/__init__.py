"""Helpers only the notebooks use: their settings and experiment bookkeeping (`experiments`), the plots they
share (`plots`), and readers of TensorBoard's event files (`logs`). Training never imports them."""
