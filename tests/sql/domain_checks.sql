-- domain_checks: proves migrations/0006_domain_checks.sql on a database built from migrations/
-- and templates/seed/app_seed.sql. Each validator accepts published or hand-checked good values
-- and rejects bad ones (one character changed, wrong length, wrong country, wrong shape), and an
-- INSERT breaking each constraint fails on that very constraint.
--
--   psql -X -v ON_ERROR_STOP=1 -d DATABASE -f tests/sql/domain_checks.sql
--
-- Any failed ASSERT or unexpected error stops psql with a non-zero exit status. Everything runs
-- in one transaction that is rolled back, so the database is left as it was; it needs no
-- privilege beyond INSERT on the shop's tables (no temporary objects).
\set ON_ERROR_STOP on
\set QUIET on
BEGIN;
SET LOCAL plpgsql.check_asserts = on;
SET LOCAL client_min_messages = warning;

-- The validators are what a CHECK constraint needs: immutable, strict, parallel safe.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
               FROM pg_proc p
              WHERE p.proname IN ('luhn_valid', 'iban_valid', 'postal_code_valid', 'e164_valid')
                AND p.pronamespace = 'public'::regnamespace LOOP
        ASSERT f.provolatile = 'i' AND f.proisstrict AND f.proparallel = 's',
            format('%s must be IMMUTABLE STRICT PARALLEL SAFE', f.proname);
    END LOOP;
    ASSERT (SELECT count(*) FROM pg_proc
             WHERE proname IN ('luhn_valid', 'iban_valid', 'postal_code_valid', 'e164_valid')
               AND pronamespace = 'public'::regnamespace) = 4, 'a validator is missing';
END;
$$;

-- luhn_valid
DO $$
DECLARE
    good text[] := ARRAY['4111111111111111', '5555555555554444', '378282246310005',
                         '6011111111111117', '4012888888881881',
                         '123456789015',           -- 12 digits, the shortest allowed
                         '6221260000000000001'];   -- 19 digits, the longest allowed
    bad  text[] := ARRAY['4111111111111112', '4111111111111121', '1411111111111111',
                         '12345678903',            -- Luhn-valid, but 11 digits
                         '12345678901234567894',   -- Luhn-valid, but 20 digits
                         '4111 1111 1111 1111', '4111-1111-1111-1111', '411111111111111A',
                         '+411111111111111', '', ' 4111111111111111'];
    v    text;
    mutated text;
BEGIN
    FOREACH v IN ARRAY good LOOP
        ASSERT luhn_valid(v), format('luhn_valid(%L) should be true', v);
    END LOOP;
    FOREACH v IN ARRAY bad LOOP
        ASSERT NOT luhn_valid(v), format('luhn_valid(%L) should be false', v);
    END LOOP;
    -- Luhn catches every single-digit substitution: try them all on every good number.
    FOREACH v IN ARRAY good LOOP
        FOR i IN 1 .. length(v) LOOP
            FOR d IN 0 .. 9 LOOP
                CONTINUE WHEN substr(v, i, 1) = d::text;
                mutated := overlay(v PLACING d::text FROM i FOR 1);
                ASSERT NOT luhn_valid(mutated), format('luhn_valid(%L) should be false', mutated);
            END LOOP;
        END LOOP;
    END LOOP;
    ASSERT luhn_valid(NULL) IS NULL, 'luhn_valid(NULL) should be NULL';
END;
$$;

-- iban_valid
DO $$
DECLARE
    -- The five the demo's generators make (published samples), then more from the registry.
    good text[] := ARRAY['DE89370400440532013000', 'GB82WEST12345698765432',
                         'FR1420041010050500013M02606', 'NL91ABNA0417164300',
                         'ES9121000418450200051332',
                         'AT611904300234573201', 'BE68539007547034', 'CH9300762011623852957',
                         'DK5000400440116243', 'FI2112345600000785', 'IT60X0542811101000000123456',
                         'NO9386011117947', 'PL61109010140000071219812874',
                         'PT50000201231234567890154', 'SE4550000000058398257466',
                         'IE29AIBK93115212345678', 'LU280019400644750000', 'GR1601101250000000012300695',
                         'MT84MALT011000012345MTLCAST001S', 'LC55HEMM000100010012001200023015',
                         'BR1800360305000010009795493C1', 'MU17BOMM0101101030300200000MUR',
                         -- check digits at the ends of their range 02..98
                         'DE97144278136108051783', 'GB98WHIS23478347532402', 'NL02JGVP1571363258'];
    bad  text[] := ARRAY[
        'DE89370400440532013001',        -- one digit changed
        'DE88370400440532013000',        -- check digits changed
        'DE8937040044053201300',         -- one digit short (21)
        'DE893704004405320130000',       -- one digit long (23)
        'GB82WEST1234569876543',         -- GB one short
        'FR1420041010050500013M0260',    -- FR one short
        'NL91ABNA04171643000',           -- NL one long
        'ES912100041845020005133',       -- ES one short
        'AT89370400440532013000',        -- a German BBAN under another country (AT is 20 long)
        'XX89370400440532013000',        -- no such country
        'US64SVBKUS6S3300958879',        -- a country without IBANs
        'NL91ABNA041716430A',            -- a letter where NL has digits
        'GB82WE5T12345698765432',        -- a digit where GB has letters
        'de89370400440532013000',        -- lower case
        'DE89 3704 0044 0532 0130 00',   -- print form
        ' DE89370400440532013000', 'DE89370400440532013000 ', '',
        -- mod 97 holds but the check digits are outside 02..98 (00 = 97, 01 = 98, 99 = 02)
        'DE00144278136108051783', 'GB01WHIS23478347532402', 'NL99JGVP1571363258'];
    v       text;
    mutated text;
    ch      text;
BEGIN
    FOREACH v IN ARRAY good LOOP
        ASSERT iban_valid(v), format('iban_valid(%L) should be true', v);
    END LOOP;
    FOREACH v IN ARRAY bad LOOP
        ASSERT NOT iban_valid(v), format('iban_valid(%L) should be false', v);
    END LOOP;
    -- The registry lengths the brief names.
    ASSERT length('DE89370400440532013000') = 22 AND length('GB82WEST12345698765432') = 22
       AND length('FR1420041010050500013M02606') = 27 AND length('NL91ABNA0417164300') = 18
       AND length('ES9121000418450200051332') = 24;
    -- MOD 97-10 catches every single substitution of a digit by a digit or a letter by a letter:
    -- try them all, in every position (country and check digits included), on the five samples.
    FOREACH v IN ARRAY good[1:5] LOOP
        FOR i IN 1 .. length(v) LOOP
            FOREACH ch IN ARRAY CASE WHEN substr(v, i, 1) ~ '[0-9]'
                                     THEN string_to_array('0123456789', NULL)
                                     ELSE string_to_array('ABCDEFGHIJKLMNOPQRSTUVWXYZ', NULL) END LOOP
                CONTINUE WHEN substr(v, i, 1) = ch;
                mutated := overlay(v PLACING ch FROM i FOR 1);
                ASSERT NOT iban_valid(mutated), format('iban_valid(%L) should be false', mutated);
            END LOOP;
        END LOOP;
    END LOOP;
    ASSERT iban_valid(NULL) IS NULL, 'iban_valid(NULL) should be NULL';
END;
$$;

-- postal_code_valid
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('US', '10001'), ('US', '90210'), ('US', '00501'), ('US', '99950'), ('US', '10001-0001'),
        ('GB', 'SW1A 1AA'), ('GB', 'M1 1AE'), ('GB', 'B33 8TH'), ('GB', 'CR2 6XH'), ('GB', 'DN55 1PT'),
        ('GB', 'W1A 0AX'), ('GB', 'EC1A 1BB'), ('GB', 'WC1B 3DG'), ('GB', 'CB2 1TN'), ('GB', 'GIR 0AA'),
        ('DE', '01001'), ('DE', '10115'), ('DE', '37073'), ('DE', '99998'),
        ('FR', '75005'), ('FR', '01000'), ('FR', '95000'), ('FR', '20000'), ('FR', '20200'),
        ('FR', '20999'), ('FR', '97110'), ('FR', '97600'),
        ('CA', 'K1A 0B1'), ('CA', 'M5V 3L9'), ('CA', 'H0H 0H0'), ('CA', 'K1Z 7B5'), ('CA', 'V6B 4W8'),
        ('NL', '1012 AB'), ('NL', '1000 AA'), ('NL', '9999 ZZ'), ('NL', '3011 SB'),
        ('ES', '28001'), ('ES', '08001'), ('ES', '52001'),
        ('JP', '100-0001'), ('JP', '060-0001'))
        AS good (country, code) LOOP
        ASSERT postal_code_valid(t.country, t.code),
            format('postal_code_valid(%L, %L) should be true', t.country, t.code);
    END LOOP;
    FOR t IN SELECT * FROM (VALUES
        ('US', '00000'), ('US', '00000-1234'), ('US', '1234'), ('US', '123456'), ('US', '10001-123'),
        ('US', '10001 1234'), ('US', 'ABCDE'),
        ('GB', 'SW1A1AA'), ('GB', 'sw1a 1aa'), ('GB', 'SW1A  1AA'), ('GB', 'SW1A 1AC'),
        ('GB', 'SW1A 1IA'), ('GB', 'M1 1KE'), ('GB', 'B33 8OH'), ('GB', 'CR2 6VH'), ('GB', 'DN55 1PM'),
        ('GB', 'QA1 1AA'), ('GB', 'VA1 1AA'), ('GB', 'XA1 1AA'), ('GB', 'AI1 1AA'), ('GB', 'AJ1 1AA'),
        ('GB', 'W1L 1AA'), ('GB', 'EC1Z 1AA'), ('GB', 'SW1A 1AAA'), ('GB', 'SW 1AA'), ('GB', 'DN555 1PT'),
        ('DE', '01000'), ('DE', '00123'), ('DE', '99999'), ('DE', '1011'), ('DE', '101150'), ('DE', '1O115'),
        ('FR', '00100'), ('FR', '96000'), ('FR', '97000'), ('FR', '97700'), ('FR', '98000'),
        ('FR', '7500'), ('FR', '2A000'), ('FR', '75 005'),
        ('CA', 'W1A 1A1'), ('CA', 'Z1A 1A1'), ('CA', 'D1A 1A1'), ('CA', 'K1O 0B1'), ('CA', 'K1A 0U1'),
        ('CA', 'K1A0B1'), ('CA', 'k1a 0b1'), ('CA', 'K1A 0B1 '),
        ('NL', '0123 AB'), ('NL', '1012AB'), ('NL', '1012 ab'), ('NL', '1012 SA'), ('NL', '1012 SD'),
        ('NL', '1012 SS'), ('NL', '10123 AB'),
        ('ES', '00123'), ('ES', '53000'), ('ES', '2800'),
        ('JP', '1000001'), ('JP', '100-00001'), ('JP', '10-00001'), ('JP', '100 0001'),
        -- a valid code of another country, and countries the function does not know
        ('DE', 'SW1A 1AA'), ('GB', '10115'), ('XX', '10115'), ('IT', '00184'), ('AT', '1010'))
        AS bad (country, code) LOOP
        ASSERT NOT postal_code_valid(t.country, t.code),
            format('postal_code_valid(%L, %L) should be false', t.country, t.code);
    END LOOP;
    ASSERT postal_code_valid(NULL, '10115') IS NULL AND postal_code_valid('DE', NULL) IS NULL,
        'postal_code_valid with a NULL should be NULL';
END;
$$;

-- e164_valid
DO $$
DECLARE
    good text[] := ARRAY['+14155552671', '+442071838750', '+4915112345678', '+33612345678',
                         '+819012345678', '+6834002', '+123456789012345'];
    bad  text[] := ARRAY['14155552671', '+04155552671', '+1234567890123456', '+1 415 555 2671',
                         '+1-415-555-2671', '+44(0)2071838750', '+', '+123456', '++14155552671',
                         '+1415555267a', '', '00442071838750'];
    v text;
BEGIN
    FOREACH v IN ARRAY good LOOP
        ASSERT e164_valid(v), format('e164_valid(%L) should be true', v);
    END LOOP;
    FOREACH v IN ARRAY bad LOOP
        ASSERT NOT e164_valid(v), format('e164_valid(%L) should be false', v);
    END LOOP;
    ASSERT e164_valid(NULL) IS NULL, 'e164_valid(NULL) should be NULL';
END;
$$;

-- The seed satisfies the constraints (it was inserted under them), and good rows go in.
INSERT INTO customers (email, full_name, country, postal_code, phone) VALUES
    ('dom.us@example.test', 'Dom US', 'US', '94105-1804', '+14155552671'),
    ('dom.gb@example.test', 'Dom GB', 'GB', 'DN55 1PT', NULL),
    ('dom.ca@example.test', 'Dom CA', 'CA', 'K1A 0B1', '+16135550123'),
    ('dom.jp@example.test', 'Dom JP', 'JP', '100-0001', '+819012345678'),
    ('dom.es@example.test', 'Dom ES', 'ES', '28001', '+34612345678');
INSERT INTO orders (customer_id) SELECT min(id) FROM customers;
INSERT INTO payments (order_id, amount_cents, method, card_last4, iban_country, card_number, iban)
SELECT (SELECT max(id) FROM orders), 1000, v.*
  FROM (VALUES ('card', '1111', NULL, '4111111111111111', NULL),
               ('card', '0005', NULL, '378282246310005', NULL),
               ('card', '4242', NULL, NULL, NULL),
               ('iban', NULL, 'DE', NULL, 'DE89370400440532013000'),
               ('iban', NULL, 'FR', NULL, 'FR1420041010050500013M02606'),
               ('iban', NULL, 'NL', NULL, NULL))
       AS v (method, card_last4, iban_country, card_number, iban);
DO $$
BEGIN
    ASSERT (SELECT count(*) FROM payments WHERE card_number IS NOT NULL OR iban IS NOT NULL) >= 4;
END;
$$;

-- Each INSERT (or UPDATE) below breaks exactly one domain rule and must fail on that constraint.
DO $$
DECLARE
    t   record;
    got text;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('customers_postal_code_valid',
         $q$INSERT INTO customers (email, full_name, country, postal_code)
            VALUES ('x1@example.test', 'X', 'US', '00000')$q$),
        ('customers_postal_code_valid',
         $q$INSERT INTO customers (email, full_name, country, postal_code)
            VALUES ('x2@example.test', 'X', 'GB', 'SW1A 1AI')$q$),
        ('customers_postal_code_valid',
         $q$INSERT INTO customers (email, full_name, country, postal_code)
            VALUES ('x3@example.test', 'X', 'XX', '10115')$q$),
        ('customers_postal_code_valid',
         $q$UPDATE customers SET postal_code = '1012 SS' WHERE country = 'NL'$q$),
        ('customers_phone_e164',
         $q$INSERT INTO customers (email, full_name, country, postal_code, phone)
            VALUES ('x4@example.test', 'X', 'DE', '10115', '0049 30 1234567')$q$),
        ('customers_phone_e164',
         $q$INSERT INTO customers (email, full_name, country, postal_code, phone)
            VALUES ('x5@example.test', 'X', 'DE', '10115', '+0301234567')$q$),
        ('payments_card_luhn',
         $q$INSERT INTO payments (order_id, amount_cents, method, card_last4, card_number)
            SELECT max(id), 1, 'card', '1112', '4111111111111112' FROM orders$q$),
        ('payments_iban_valid',
         $q$INSERT INTO payments (order_id, amount_cents, method, iban_country, iban)
            SELECT max(id), 1, 'iban', 'DE', 'DE89370400440532013001' FROM orders$q$),
        ('payments_iban_valid',
         $q$INSERT INTO payments (order_id, amount_cents, method, iban_country, iban)
            SELECT max(id), 1, 'iban', 'DE', 'DE8937040044053201300' FROM orders$q$),
        ('payments_card_last4_matches',
         $q$INSERT INTO payments (order_id, amount_cents, method, card_last4, card_number)
            SELECT max(id), 1, 'card', '4242', '4111111111111111' FROM orders$q$),
        ('payments_card_last4_matches',
         $q$INSERT INTO payments (order_id, amount_cents, method, iban_country, card_number)
            SELECT max(id), 1, 'iban', 'DE', '4111111111111111' FROM orders$q$),
        ('payments_iban_country_matches',
         $q$INSERT INTO payments (order_id, amount_cents, method, iban_country, iban)
            SELECT max(id), 1, 'iban', 'GB', 'DE89370400440532013000' FROM orders$q$),
        ('payments_iban_country_matches',
         $q$INSERT INTO payments (order_id, amount_cents, method, card_last4, iban)
            SELECT max(id), 1, 'card', '1111', 'DE89370400440532013000' FROM orders$q$),
        -- stock can never go negative (0002/0003): LST-0001 has one unit, sell two
        ('products_stock_nonnegative',
         $q$INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
            SELECT (SELECT max(id) FROM orders), id, 2, price_cents
              FROM products WHERE sku = 'LST-0001'$q$))
        AS v (want, stmt) LOOP
        BEGIN
            EXECUTE t.stmt;
            RAISE EXCEPTION 'not rejected (expected %): %', t.want, t.stmt;
        EXCEPTION WHEN check_violation THEN
            GET STACKED DIAGNOSTICS got = CONSTRAINT_NAME;
            ASSERT got = t.want, format('expected %s, failed on %s: %s', t.want, got, t.stmt);
        END;
    END LOOP;
END;
$$;

ROLLBACK;
\echo 'domain_checks: all passed'
