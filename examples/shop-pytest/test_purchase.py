"""The purchase suite: every test buys the last unit of a product from the golden data."""
import pytest

import shop

LAST = [f"LAST-{i:02d}" for i in range(1, 21)]


@pytest.mark.parametrize("sku", LAST)
def test_buying_the_last_unit_empties_the_shelf(db, sku):
    shop.buy(db, "customer1@example.test", sku)
    assert shop.stock(db, sku) == 0


@pytest.mark.parametrize("sku", LAST)
def test_a_second_buyer_finds_it_sold_out(db, sku):
    shop.buy(db, "customer2@example.test", sku)
    with pytest.raises(shop.OutOfStock):
        shop.buy(db, "customer3@example.test", sku)


@pytest.mark.parametrize("sku", LAST)
def test_a_cancelled_order_puts_the_unit_back(db, sku):
    order = shop.buy(db, "customer4@example.test", sku)
    shop.cancel(db, order)
    assert shop.stock(db, sku) == 1
    shop.buy(db, "customer5@example.test", sku)


@pytest.mark.parametrize("n", range(1, 21))
def test_one_open_order_per_customer_and_product(db, n):
    email = f"customer{n}@example.test"
    shop.buy(db, email, "PLENTY")
    with pytest.raises(shop.AlreadyOrdered):
        shop.buy(db, email, "PLENTY")
    assert shop.open_orders(db, email) == 1
