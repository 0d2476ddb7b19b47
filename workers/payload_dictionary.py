"""The preset dictionary the kept payloads are compressed with: the field names of the shops' orders.

Much of a webhook's compressed size is its field names, which every order repeats; given them in
advance (zlib's ``zdict``), deflate refers to them instead of spelling them out: a WooCommerce order
of the published samples keeps in 1,090 bytes instead of 1,406, a Shopify one in 1,862 instead of
2,442 (``bench/memory.py``). The names are those of the WooCommerce REST API v3 order and Shopify's
order and refund webhooks, as in the published samples of ``tests/fixtures`` (the most frequent
last: deflate finds the nearest first).

Never change :data:`V1`: every payload kept with it must still decompress. A better dictionary is
a new constant under a new version byte in :mod:`workers.kept_payloads`.
"""

from __future__ import annotations

_FIELDS = (
    "accepts_marketing", "accepts_marketing_updated_at", "action", "arg", "avatar_url", "completed_at",
    "consent_updated_at", "customer_ip", "data_request", "delivery_category", "description", "duties_included",
    "email_marketing_consent", "last_order_date", "last_order_name", "line_item_groups", "marketing_opt_in_level",
    "merchant_business_entity_id", "opt_in_level", "order", "orders_requested", "orders_to_redact", "paid",
    "payment_details", "processing_method", "shipping_methods", "sms_marketing_consent", "tax_status",
    "total_cash_rounding_payment_adjustment_set", "total_cash_rounding_refund_adjustment_set",
    "total_line_items_quantity", "total_price_usd", "total_shipping", "username", "view_order_url",
    "amount_rounding", "last_order_id", "meta", "orders_count", "total_spent", "country_name",
    "current_discounted_price_set", "is_removed", "refunded_by", "refunded_payment", "shop_domain", "shop_id",
    "up", "allocation_method", "manual_payment_gateway", "refund", "target_selection", "target_type",
    "total_unsettled_set", "value_type", "carrier_identifier", "discounted_price", "discounted_price_set",
    "requested_fulfillment_service_id", "sales_line_item_group_id", "source", "discount", "refund_shipping_lines",
    "type", "accept_language", "browser_height", "browser_width", "order_adjustments", "refund_id",
    "refund_line_items", "restock", "return", "session_hash", "tax_amount", "tax_amount_set", "total_duties_set",
    "transactions", "user_agent", "authorization", "current_shipping_price_set", "error_code", "message",
    "payment_id", "receipt", "returns", "tax_exemptions", "checkout_id", "client_details", "confirmation_number",
    "current_subtotal_price", "current_subtotal_price_set", "current_total_additional_fees_set",
    "current_total_discounts", "current_total_discounts_set", "current_total_duties_set", "current_total_price",
    "current_total_price_set", "current_total_tax", "current_total_tax_set", "default", "default_address",
    "estimated_taxes", "merchant_of_record_app_id", "multipass_identifier", "original_total_additional_fees_set",
    "original_total_duties_set", "payment_terms", "po_number", "total_outstanding", "verified_email", "app_id",
    "buyer_accepts_marketing", "cancel_reason", "cancelled_at", "cart_token", "checkout_token", "closed_at",
    "confirmed", "contact_email", "customer_locale", "discount_applications", "discount_codes", "financial_status",
    "fulfillments", "landing_site", "landing_site_ref", "note_attributes", "order_status_url",
    "payment_gateway_names", "presentment_currency", "reference", "referring_site", "source_identifier",
    "source_url", "subtotal_price", "subtotal_price_set", "taxes_included", "token", "total_discounts",
    "total_discounts_set", "total_line_items_price", "total_line_items_price_set", "total_price",
    "total_price_set", "total_shipping_price_set", "total_tip_received", "total_weight", "line_item",
    "line_item_id", "order_number", "restock_type", "subtotal_set", "billing_address", "shipping_address", "tags",
    "discount_application_index", "reason", "rate_percent", "currency_symbol", "instance_id", "is_editable",
    "kind", "needs_payment", "needs_processing", "payment_url", "code", "browser_ip", "gateway", "device_id",
    "display_key", "display_value", "rate_code", "shipping_tax_total", "source_name", "tax_exempt", "tax_total",
    "test", "label", "amount_set", "compound", "rate_id", "updated_at", "attributed_staffs", "billing",
    "cart_hash", "created_via", "current_quantity", "customer_ip_address", "customer_note", "date_completed",
    "date_completed_gmt", "date_modified", "date_modified_gmt", "date_paid", "date_paid_gmt", "discount_total",
    "order_key", "payment_method", "payment_method_title", "prices_include_tax", "shipping", "shipping_total",
    "total_tax_set", "transaction_id", "version", "cart_tax", "coupon_lines", "customer_user_agent", "fee_lines",
    "order_id", "shipping_tax", "method_id", "method_title", "_links", "channel_liable", "collection",
    "date_created", "date_created_gmt", "rate", "self", "latitude", "longitude", "processed_at", "user_id",
    "discount_tax", "note", "address1", "address2", "country_code", "customer", "province", "province_code", "zip",
    "fulfillable_quantity", "fulfillment_service", "gift_card", "grams", "product_exists", "properties",
    "requires_shipping", "taxable", "total_discount_set", "variant_id", "variant_inventory_management",
    "variant_title", "vendor", "location_id", "parent_id", "total_discount", "status", "customer_id", "number",
    "refunds", "shipping_lines", "discount_allocations", "duties", "line_items", "created_at",
    "fulfillment_status", "email", "address_1", "address_2", "postcode", "key", "state", "currency", "price_set",
    "title", "value", "admin_graphql_api_id", "href", "tax_lines", "image", "parent_name", "src", "city",
    "country", "company", "first_name", "last_name", "variation_id", "subtotal_tax", "tax_class", "phone", "taxes",
    "product_id", "sku", "quantity", "price", "total_tax", "meta_data", "name", "subtotal", "total",
    "presentment_money", "shop_money", "id", "currency_code", "amount",
)
V1 = "".join(f'"{name}":' for name in _FIELDS).encode()
