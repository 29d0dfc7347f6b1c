"""The Alpha Skyport v2 business schema (seed 000_a6bacd5330e2a985), with the seed's bugs fixed.

Revision ID: 0001_seed_schema
Revises: (none)

The DDL is the seed's, written out as SQL. Every place where it departs from the seed carries a
comment starting with "FIX (seed bug)" or "CHANGE" that says what and why. db/schema/business/
mirrors every table, constraint and index declared here (tests/integration/test_schema.py checks
that Alembic's autogenerate finds no difference).

Partitions: the seed's fixed 2025 partitions are not created; `create_monthly_partitions` creates
`<parent>_<yyyy>_<mm>` for the current month (UTC) through three months ahead. A scheduled job keeps
partitions ahead afterwards.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import op
from psycopg import sql

revision = "0001_seed_schema"
down_revision = None
branch_labels = None
depends_on = None

# Tables partitioned by month on a TIMESTAMP column.
PARTITIONED_TABLES = ("shipment_tracking_events", "audit_log")
# Months created by this migration: the current one plus this many ahead.
MONTHS_AHEAD = 3


def _add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def create_monthly_partitions(parent: str, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create `<parent>_<yyyy>_<mm>` FOR VALUES FROM (first day) TO (next first day), current month
    (UTC) through `months_ahead` months later; returns the partition names. Identifiers and bounds
    are composed by psycopg (sql.Identifier / sql.Literal), never by string formatting."""
    this_month = datetime.now(UTC).date().replace(day=1)
    driver = op.get_bind().connection.driver_connection  # the psycopg connection, same transaction
    names = []
    for offset in range(months_ahead + 1):
        start = _add_months(this_month, offset)
        end = _add_months(start, 1)
        name = f"{parent}_{start:%Y_%m}"
        driver.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(name), sql.Identifier(parent), sql.Literal(start), sql.Literal(end)
            )
        )
        names.append(name)
    return names


def upgrade() -> None:
    # ---------------------------------------------------------------------------------------------
    # 1. users + the optimistic-locking trigger function shared by every table with a version column.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE users (
            user_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            email VARCHAR(255) UNIQUE NOT NULL,
            password_hash VARCHAR(255) NOT NULL,
            user_type VARCHAR(20) NOT NULL CHECK (user_type IN ('private', 'business')),
            first_name VARCHAR(100),
            last_name VARCHAR(100),
            company_name VARCHAR(255),
            phone VARCHAR(50),
            country_code VARCHAR(3),
            address_line1 VARCHAR(255),
            address_line2 VARCHAR(255),
            city VARCHAR(100),
            state_province VARCHAR(100),
            postal_code VARCHAR(20),
            is_verified BOOLEAN DEFAULT FALSE,
            is_active BOOLEAN DEFAULT TRUE,

            -- Concurrency control (maintained by increment_version, see below)
            version INTEGER DEFAULT 1 NOT NULL,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            last_login TIMESTAMP
        );

        CREATE INDEX idx_users_email ON users(email);
        CREATE INDEX idx_users_type ON users(user_type);
        CREATE INDEX idx_users_active ON users(is_active) WHERE is_active = TRUE;

        -- The single mechanism for `version`: every UPDATE of a versioned row bumps it by exactly one,
        -- whatever the statement wrote to it. (FIX (seed bug): the seed's functions also wrote
        -- `version = version + 1`, redundant with this trigger; they no longer do.)
        CREATE FUNCTION increment_version()
        RETURNS TRIGGER AS $$
        BEGIN
            NEW.version = OLD.version + 1;
            NEW.updated_at = CURRENT_TIMESTAMP;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql;

        CREATE TRIGGER users_version_trigger
        BEFORE UPDATE ON users
        FOR EACH ROW
        EXECUTE FUNCTION increment_version();
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 2. countries, 3. freight_services (reference tables, cached by the application).
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE countries (
            country_id SERIAL PRIMARY KEY,
            country_code VARCHAR(3) UNIQUE NOT NULL,
            country_name VARCHAR(100) NOT NULL,
            region VARCHAR(50),
            is_active BOOLEAN DEFAULT TRUE,
            cache_version INTEGER DEFAULT 1,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        );

        CREATE INDEX idx_countries_code ON countries(country_code);
        CREATE INDEX idx_countries_active ON countries(is_active) WHERE is_active = TRUE;

        CREATE TABLE freight_services (
            service_id SERIAL PRIMARY KEY,
            service_name VARCHAR(100) NOT NULL,
            service_type VARCHAR(20) NOT NULL CHECK (service_type IN ('sea', 'air', 'land')),
            description TEXT,
            base_rate DECIMAL(10, 2),
            currency VARCHAR(3) DEFAULT 'USD',
            estimated_days_min INTEGER,
            estimated_days_max INTEGER,

            -- Capacity management (copied into capacity_bookings per date by reserve_capacity;
            -- NULL means the service's capacity is not limited)
            max_daily_capacity_kg DECIMAL(12, 2),
            max_daily_capacity_m3 DECIMAL(12, 2),

            is_active BOOLEAN DEFAULT TRUE,
            cache_version INTEGER DEFAULT 1,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        );

        CREATE INDEX idx_freight_service_type ON freight_services(service_type);
        CREATE INDEX idx_freight_active ON freight_services(is_active) WHERE is_active = TRUE;
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 4. quotes (optimistic locking).
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE quotes (
            quote_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id UUID NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,

            idempotency_key VARCHAR(100) UNIQUE,

            origin_country_id INTEGER NOT NULL REFERENCES countries(country_id),
            destination_country_id INTEGER NOT NULL REFERENCES countries(country_id),
            service_id INTEGER REFERENCES freight_services(service_id),
            is_residential BOOLEAN DEFAULT FALSE,

            cargo_description TEXT,
            cargo_weight DECIMAL(10, 2),
            cargo_weight_unit VARCHAR(10) DEFAULT 'kg',
            cargo_volume DECIMAL(10, 2),
            cargo_volume_unit VARCHAR(10) DEFAULT 'm3',
            cargo_value DECIMAL(12, 2),
            cargo_currency VARCHAR(3) DEFAULT 'USD',
            special_requirements TEXT,

            quote_status VARCHAR(20) DEFAULT 'pending' CHECK (quote_status IN (
                'pending', 'calculating', 'quoted', 'accepted', 'rejected', 'expired', 'converted'
            )),

            -- Pricing snapshot (immutable once quoted)
            pricing_snapshot JSONB,
            quoted_price DECIMAL(12, 2),
            quoted_at TIMESTAMP,
            valid_until TIMESTAMP,

            -- Prevent double-conversion (see convert_quote_to_shipment)
            converted_to_shipment_id UUID,
            converted_at TIMESTAMP,

            version INTEGER DEFAULT 1 NOT NULL,

            notes TEXT,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

            CONSTRAINT quote_single_conversion CHECK (
                (converted_to_shipment_id IS NULL AND converted_at IS NULL) OR
                (converted_to_shipment_id IS NOT NULL AND converted_at IS NOT NULL)
            )
        );

        CREATE INDEX idx_quotes_user ON quotes(user_id);
        CREATE INDEX idx_quotes_status ON quotes(quote_status);
        CREATE INDEX idx_quotes_idempotency ON quotes(idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE INDEX idx_quotes_valid_until ON quotes(valid_until) WHERE quote_status = 'quoted';

        CREATE TRIGGER quotes_version_trigger
        BEFORE UPDATE ON quotes
        FOR EACH ROW
        EXECUTE FUNCTION increment_version();
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 5. Tracking numbers: a sequence and the table of allocated numbers.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE SEQUENCE tracking_number_seq
            START WITH 1000000
            INCREMENT BY 1
            NO CYCLE;

        CREATE TABLE tracking_numbers (
            tracking_id BIGSERIAL PRIMARY KEY,
            tracking_number VARCHAR(50) UNIQUE NOT NULL,
            shipment_id UUID UNIQUE,
            allocated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            used_at TIMESTAMP,
            is_used BOOLEAN DEFAULT FALSE,

            CONSTRAINT tracking_must_be_used CHECK (
                (is_used = FALSE AND used_at IS NULL) OR
                (is_used = TRUE AND used_at IS NOT NULL)
            )
        );

        CREATE INDEX idx_tracking_unused ON tracking_numbers(is_used) WHERE is_used = FALSE;

        -- Format: ASL-YYYY-NNNNNNN (Alpha Skyport Ltd - year - number), reserved in tracking_numbers.
        CREATE FUNCTION generate_tracking_number()
        RETURNS VARCHAR(50) AS $$
        DECLARE
            new_number VARCHAR(50);
            seq_val BIGINT;
        BEGIN
            seq_val := nextval('tracking_number_seq');

            -- FIX (seed bug): the year came from CURRENT_DATE, i.e. the session's time zone, so
            -- two sessions could disagree around New Year; the year is now taken in UTC.
            -- FIX (seed bug): LPAD(x, 7, '0') TRUNCATES strings longer than 7 characters, so from
            -- 10,000,000 on two sequence values would map to the same number (and the INSERT
            -- below would fail on the unique constraint); pad to at least 7 digits, never cut.
            new_number := 'ASL-' ||
                          TO_CHAR(now() AT TIME ZONE 'UTC', 'YYYY') || '-' ||
                          LPAD(seq_val::TEXT, GREATEST(7, LENGTH(seq_val::TEXT)), '0');

            INSERT INTO tracking_numbers (tracking_number, is_used)
            VALUES (new_number, FALSE);

            RETURN new_number;
        END;
        $$ LANGUAGE plpgsql;
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 6. shipments.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE shipments (
            shipment_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            tracking_number VARCHAR(50) UNIQUE NOT NULL,

            user_id UUID NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
            quote_id UUID REFERENCES quotes(quote_id),
            service_id INTEGER NOT NULL REFERENCES freight_services(service_id),

            origin_country_id INTEGER NOT NULL REFERENCES countries(country_id),
            destination_country_id INTEGER NOT NULL REFERENCES countries(country_id),
            origin_address TEXT,
            destination_address TEXT,
            is_residential_delivery BOOLEAN DEFAULT FALSE,

            cargo_description TEXT,
            cargo_weight DECIMAL(10, 2),
            cargo_weight_unit VARCHAR(10) DEFAULT 'kg',
            cargo_volume DECIMAL(10, 2),
            cargo_volume_unit VARCHAR(10) DEFAULT 'm3',
            declared_value DECIMAL(12, 2),
            currency VARCHAR(3) DEFAULT 'USD',

            shipment_status VARCHAR(30) DEFAULT 'pending' CHECK (shipment_status IN (
                'pending', 'confirmed', 'picked_up', 'in_transit',
                'customs_clearance', 'out_for_delivery', 'delivered',
                'cancelled', 'returned', 'exception'
            )),

            previous_status VARCHAR(30),
            status_changed_at TIMESTAMP,

            estimated_pickup_date DATE,
            actual_pickup_date DATE,
            estimated_delivery_date DATE,
            actual_delivery_date DATE,

            total_cost DECIMAL(12, 2),
            payment_status VARCHAR(20) DEFAULT 'unpaid' CHECK (payment_status IN (
                'unpaid', 'pending', 'partial', 'paid', 'refunded', 'failed'
            )),

            -- FIX (seed bug): amount_paid was nullable, so `amount_paid + x` could silently be NULL
            -- and the payment check below could pass on NULL. It is a running total: NOT NULL.
            amount_paid DECIMAL(12, 2) NOT NULL DEFAULT 0,
            amount_due DECIMAL(12, 2),

            special_instructions TEXT,

            version INTEGER DEFAULT 1 NOT NULL,

            deleted_at TIMESTAMP,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

            -- FIX (seed bug): the seed's `amount_paid <= total_cost AND amount_due >= 0` is NULL,
            -- hence PASSES, whenever total_cost or amount_due is NULL, and allowed a negative
            -- amount_paid. The rule now, with every NULL handled explicitly so that the check is
            -- never NULL (amount_paid is NOT NULL):
            --   * amount_paid is never negative;
            --   * amount_paid never exceeds total_cost, and a shipment without a total_cost yet
            --     cannot have been paid anything (COALESCE(total_cost, 0));
            --   * total_cost, when known, is not negative;
            --   * amount_due, when known, is not negative (NULL = not computed yet).
            CONSTRAINT shipment_payment_check CHECK (
                amount_paid >= 0
                AND amount_paid <= COALESCE(total_cost, 0)
                AND (total_cost IS NULL OR total_cost >= 0)
                AND (amount_due IS NULL OR amount_due >= 0)
            )
        );

        CREATE INDEX idx_shipments_tracking ON shipments(tracking_number);
        CREATE INDEX idx_shipments_user ON shipments(user_id);
        CREATE INDEX idx_shipments_status ON shipments(shipment_status);
        CREATE INDEX idx_shipments_dates ON shipments(estimated_delivery_date);
        CREATE INDEX idx_shipments_payment ON shipments(payment_status) WHERE payment_status != 'paid';
        CREATE INDEX idx_shipments_active ON shipments(deleted_at) WHERE deleted_at IS NULL;
        -- CHANGE: a quote converts into at most one shipment (quotes.converted_to_shipment_id is
        -- single-valued). convert_quote_to_shipment enforces it under a row lock; this partial
        -- unique index is the backstop for any other writer (and indexes the FK column).
        CREATE UNIQUE INDEX shipments_quote_id_key ON shipments(quote_id) WHERE quote_id IS NOT NULL;

        CREATE TRIGGER shipments_version_trigger
        BEFORE UPDATE ON shipments
        FOR EACH ROW
        EXECUTE FUNCTION increment_version();

        CREATE FUNCTION track_status_change()
        RETURNS TRIGGER AS $$
        BEGIN
            -- FIX (seed bug): `OLD.shipment_status != NEW.shipment_status` is NULL (not TRUE) when
            -- either side is NULL (the column is nullable), so such a change went unrecorded.
            IF OLD.shipment_status IS DISTINCT FROM NEW.shipment_status THEN
                NEW.previous_status = OLD.shipment_status;
                NEW.status_changed_at = CURRENT_TIMESTAMP;
            END IF;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql;

        CREATE TRIGGER shipment_status_trigger
        BEFORE UPDATE ON shipments
        FOR EACH ROW
        EXECUTE FUNCTION track_status_change();
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 7. shipment_tracking_events, partitioned by month on event_timestamp (immutable events).
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE shipment_tracking_events (
            event_id BIGSERIAL,
            shipment_id UUID NOT NULL REFERENCES shipments(shipment_id) ON DELETE CASCADE,

            event_status VARCHAR(30) NOT NULL,
            event_location VARCHAR(255),
            event_country_id INTEGER REFERENCES countries(country_id),
            event_description TEXT,

            latitude DECIMAL(10, 8),
            longitude DECIMAL(11, 8),

            event_timestamp TIMESTAMP NOT NULL,
            event_source VARCHAR(50), -- 'system', 'manual', 'api', 'gps'

            -- Idempotency for external systems (deduplicated through tracking_event_external_ids)
            external_event_id VARCHAR(100),

            created_by VARCHAR(100),
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

            PRIMARY KEY (event_id, event_timestamp)
        ) PARTITION BY RANGE (event_timestamp);

        CREATE INDEX idx_tracking_shipment ON shipment_tracking_events(shipment_id, event_timestamp DESC);
        CREATE INDEX idx_tracking_external ON shipment_tracking_events(external_event_id)
            WHERE external_event_id IS NOT NULL;

        -- FIX (seed bug): the seed's
        --     CREATE UNIQUE INDEX idx_tracking_external_unique
        --         ON shipment_tracking_events(shipment_id, external_event_id) WHERE ...
        -- is refused by PostgreSQL: a unique index on a partitioned table must include the
        -- partition key, and adding event_timestamp would let the same external event in twice at
        -- two timestamps. External events are deduplicated instead through this small unpartitioned
        -- table keyed by (shipment_id, external_event_id): a trigger on shipment_tracking_events
        -- registers every external event here, so a duplicate fails with a unique_violation on
        -- tracking_event_external_ids_pkey, exactly as the intended unique index would have.
        -- Consequence: `INSERT ... ON CONFLICT (shipment_id, external_event_id)` on the events table
        -- is not available (no arbiter index there); writers catch unique_violation (in a
        -- savepoint) instead. Dropping an old partition keeps its external ids registered
        -- (a replayed old external event stays refused); deleting rows frees them (trigger).
        CREATE TABLE tracking_event_external_ids (
            shipment_id UUID NOT NULL REFERENCES shipments(shipment_id) ON DELETE CASCADE,
            external_event_id VARCHAR(100) NOT NULL,
            event_id BIGINT NOT NULL,
            event_timestamp TIMESTAMP NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            PRIMARY KEY (shipment_id, external_event_id)
        );

        CREATE FUNCTION register_external_tracking_event()
        RETURNS TRIGGER AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.external_event_id IS NOT NULL THEN
                DELETE FROM tracking_event_external_ids
                WHERE shipment_id = OLD.shipment_id
                  AND external_event_id = OLD.external_event_id
                  AND event_id = OLD.event_id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.external_event_id IS NOT NULL THEN
                INSERT INTO tracking_event_external_ids
                    (shipment_id, external_event_id, event_id, event_timestamp)
                VALUES (NEW.shipment_id, NEW.external_event_id, NEW.event_id, NEW.event_timestamp);
            END IF;
            RETURN NULL;  -- AFTER trigger: the return value is ignored
        END;
        $$ LANGUAGE plpgsql;

        CREATE TRIGGER shipment_tracking_events_external_id_trigger
        AFTER INSERT OR DELETE OR UPDATE OF shipment_id, external_event_id, event_id, event_timestamp
        ON shipment_tracking_events
        FOR EACH ROW
        EXECUTE FUNCTION register_external_tracking_event();
        """
    )
    create_monthly_partitions("shipment_tracking_events")

    # ---------------------------------------------------------------------------------------------
    # 8. capacity_bookings + reserve_capacity, 9. shipment_reservations.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE capacity_bookings (
            booking_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            service_id INTEGER NOT NULL REFERENCES freight_services(service_id),
            booking_date DATE NOT NULL,

            -- FIX (seed bug): running totals, NOT NULL (a NULL total made every reservation fail
            -- through NULL arithmetic, and the capacity checks below pass on NULL).
            reserved_weight_kg DECIMAL(12, 2) NOT NULL DEFAULT 0,
            reserved_volume_m3 DECIMAL(12, 2) NOT NULL DEFAULT 0,

            -- Limits, copied from the service for this date (NULL = not limited).
            max_weight_kg DECIMAL(12, 2),
            max_volume_m3 DECIMAL(12, 2),

            version INTEGER DEFAULT 1 NOT NULL,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

            CONSTRAINT capacity_weight_check CHECK (reserved_weight_kg <= max_weight_kg),
            CONSTRAINT capacity_volume_check CHECK (reserved_volume_m3 <= max_volume_m3),

            UNIQUE(service_id, booking_date)
        );

        CREATE INDEX idx_capacity_service_date ON capacity_bookings(service_id, booking_date);

        -- CHANGE: the seed gives capacity_bookings a version column but no trigger, and bumped it
        -- by hand in reserve_capacity only; any other writer (releasing a reservation, an admin
        -- changing the limits) would leave it unchanged and break optimistic locking on the row.
        -- The same trigger as users/quotes/shipments makes the version (and updated_at) right for
        -- every writer, and keeps one mechanism.
        CREATE TRIGGER capacity_bookings_version_trigger
        BEFORE UPDATE ON capacity_bookings
        FOR EACH ROW
        EXECUTE FUNCTION increment_version();

        -- Atomically reserve capacity of a service on a date: TRUE when reserved, FALSE when the
        -- remaining capacity is too small (nothing changes then).
        CREATE FUNCTION reserve_capacity(
            p_service_id INTEGER,
            p_booking_date DATE,
            p_weight_kg DECIMAL,
            p_volume_m3 DECIMAL
        ) RETURNS BOOLEAN AS $$
        DECLARE
            v_booking capacity_bookings%ROWTYPE;
        BEGIN
            IF p_weight_kg IS NULL OR p_volume_m3 IS NULL OR p_weight_kg < 0 OR p_volume_m3 < 0 THEN
                RAISE EXCEPTION 'reserve_capacity: weight and volume must be >= 0 (got %, %)',
                    p_weight_kg, p_volume_m3
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;

            -- FIX (seed bug): the seed never created the row for a date, so with no row the
            -- SELECT found nothing, the comparison was NULL and every reservation returned FALSE.
            -- Create the day's row from the service's max daily capacity; ON CONFLICT DO NOTHING
            -- makes concurrent first reservations of a day safe (the loser waits, then skips).
            INSERT INTO capacity_bookings (service_id, booking_date, max_weight_kg, max_volume_m3)
            SELECT service_id, p_booking_date, max_daily_capacity_kg, max_daily_capacity_m3
            FROM freight_services
            WHERE service_id = p_service_id
            ON CONFLICT (service_id, booking_date) DO NOTHING;

            -- Lock the row for this service/date: concurrent reservations queue here.
            SELECT * INTO v_booking
            FROM capacity_bookings
            WHERE service_id = p_service_id AND booking_date = p_booking_date
            FOR UPDATE;

            IF NOT FOUND THEN
                RAISE EXCEPTION 'reserve_capacity: freight service % does not exist', p_service_id
                    USING ERRCODE = 'no_data_found';
            END IF;

            -- FIX (seed bug): a NULL limit (service without a configured capacity) made the
            -- comparison NULL, i.e. refused every reservation, while the table's CHECK constraints
            -- treat NULL as "not limited". NULL now means not limited here too.
            IF (v_booking.max_weight_kg IS NOT NULL
                    AND v_booking.reserved_weight_kg + p_weight_kg > v_booking.max_weight_kg)
               OR (v_booking.max_volume_m3 IS NOT NULL
                    AND v_booking.reserved_volume_m3 + p_volume_m3 > v_booking.max_volume_m3) THEN
                RETURN FALSE;
            END IF;

            -- FIX (seed bug): no `version = version + 1` here: the version trigger bumps it.
            UPDATE capacity_bookings
            SET reserved_weight_kg = reserved_weight_kg + p_weight_kg,
                reserved_volume_m3 = reserved_volume_m3 + p_volume_m3
            WHERE booking_id = v_booking.booking_id;

            RETURN TRUE;
        END;
        $$ LANGUAGE plpgsql;

        CREATE TABLE shipment_reservations (
            reservation_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            shipment_id UUID NOT NULL REFERENCES shipments(shipment_id) ON DELETE CASCADE,
            booking_id UUID NOT NULL REFERENCES capacity_bookings(booking_id),

            reserved_weight_kg DECIMAL(12, 2) NOT NULL,
            reserved_volume_m3 DECIMAL(12, 2) NOT NULL,

            reservation_status VARCHAR(20) DEFAULT 'active' CHECK (reservation_status IN (
                'active', 'released', 'confirmed'
            )),

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            released_at TIMESTAMP,

            UNIQUE(shipment_id, booking_id)
        );

        CREATE INDEX idx_reservations_shipment ON shipment_reservations(shipment_id);
        CREATE INDEX idx_reservations_booking ON shipment_reservations(booking_id);
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 10. payment_transactions, 11. notification_queue.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE payment_transactions (
            transaction_id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            shipment_id UUID NOT NULL REFERENCES shipments(shipment_id) ON DELETE CASCADE,

            idempotency_key VARCHAR(100) UNIQUE NOT NULL,
            external_transaction_id VARCHAR(255),

            amount DECIMAL(12, 2) NOT NULL,
            currency VARCHAR(3) NOT NULL,

            transaction_type VARCHAR(20) NOT NULL CHECK (transaction_type IN (
                'payment', 'refund', 'chargeback', 'adjustment'
            )),

            payment_method VARCHAR(30) CHECK (payment_method IN (
                'credit_card', 'bank_transfer', 'mobile_money', 'cash', 'other'
            )),

            transaction_status VARCHAR(20) DEFAULT 'pending' CHECK (transaction_status IN (
                'pending', 'processing', 'completed', 'failed', 'cancelled', 'refunded'
            )),

            gateway_provider VARCHAR(50),
            gateway_response JSONB,

            processed_at TIMESTAMP,
            failed_reason TEXT,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        );

        CREATE INDEX idx_payments_shipment ON payment_transactions(shipment_id);
        CREATE INDEX idx_payments_idempotency ON payment_transactions(idempotency_key);
        CREATE INDEX idx_payments_status ON payment_transactions(transaction_status);
        CREATE INDEX idx_payments_external ON payment_transactions(external_transaction_id)
            WHERE external_transaction_id IS NOT NULL;

        CREATE TABLE notification_queue (
            queue_id BIGSERIAL PRIMARY KEY,
            user_id UUID NOT NULL REFERENCES users(user_id) ON DELETE CASCADE,
            shipment_id UUID REFERENCES shipments(shipment_id) ON DELETE CASCADE,

            notification_type VARCHAR(50) NOT NULL,

            dedup_key VARCHAR(200) UNIQUE NOT NULL,

            title VARCHAR(255) NOT NULL,
            message TEXT NOT NULL,
            metadata JSONB,

            send_via VARCHAR(20)[] DEFAULT ARRAY['in_app'], -- array of channels

            status VARCHAR(20) DEFAULT 'pending' CHECK (status IN (
                'pending', 'processing', 'sent', 'failed', 'cancelled'
            )),

            attempts INTEGER DEFAULT 0,
            max_attempts INTEGER DEFAULT 3,
            next_retry_at TIMESTAMP,
            last_error TEXT,

            sent_at TIMESTAMP,
            delivered_at TIMESTAMP,
            read_at TIMESTAMP,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        );

        CREATE INDEX idx_notif_queue_status ON notification_queue(status, next_retry_at)
            WHERE status IN ('pending', 'failed');
        CREATE INDEX idx_notif_queue_user ON notification_queue(user_id);
        CREATE INDEX idx_notif_queue_dedup ON notification_queue(dedup_key);
        """
    )

    # ---------------------------------------------------------------------------------------------
    # 12. audit_log, partitioned by month on created_at.
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE TABLE audit_log (
            audit_id BIGSERIAL,

            table_name VARCHAR(100) NOT NULL,
            record_id VARCHAR(100) NOT NULL,
            action VARCHAR(20) NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),

            user_id UUID REFERENCES users(user_id),
            performed_by VARCHAR(100),
            ip_address INET,

            old_values JSONB,
            new_values JSONB,
            changed_fields TEXT[],

            reason TEXT,

            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

            -- FIX (seed bug): the seed's `audit_id BIGSERIAL PRIMARY KEY` is refused: a primary key
            -- on a partitioned table must include the partition key. (created_at is thereby NOT
            -- NULL, which a row needs anyway to be routed to a partition.)
            PRIMARY KEY (audit_id, created_at)
        ) PARTITION BY RANGE (created_at);

        CREATE INDEX idx_audit_table_record ON audit_log(table_name, record_id);
        CREATE INDEX idx_audit_user ON audit_log(user_id) WHERE user_id IS NOT NULL;
        CREATE INDEX idx_audit_created ON audit_log(created_at DESC);
        """
    )
    create_monthly_partitions("audit_log")

    # ---------------------------------------------------------------------------------------------
    # Functions of the seed's "Sample Concurrent Operations".
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        -- Convert an accepted quote into a shipment; p_expected_version is the quote version the
        -- caller saw (optimistic locking). Returns the new shipment's id.
        CREATE FUNCTION convert_quote_to_shipment(
            p_quote_id UUID,
            p_expected_version INTEGER
        ) RETURNS UUID AS $$
        DECLARE
            v_quote quotes%ROWTYPE;
            v_shipment_id UUID;
            v_tracking_number VARCHAR(50);
        BEGIN
            -- FIX (seed bug): the seed read the quote without a lock (INSERT ... SELECT FROM
            -- quotes WHERE version = ... AND converted_to_shipment_id IS NULL), so two concurrent
            -- conversions both saw the unconverted quote and both created a shipment; the second
            -- one's UPDATE of the quote then waited and overwrote the first. Lock the quote row
            -- first: a concurrent conversion waits here and then sees the converted quote.
            SELECT * INTO v_quote FROM quotes WHERE quote_id = p_quote_id FOR UPDATE;

            IF NOT FOUND THEN
                RAISE EXCEPTION 'Quote conversion failed - quote % does not exist', p_quote_id
                    USING ERRCODE = 'no_data_found';
            END IF;
            IF v_quote.converted_to_shipment_id IS NOT NULL THEN
                RAISE EXCEPTION 'Quote conversion failed - quote % is already converted (shipment %)',
                    p_quote_id, v_quote.converted_to_shipment_id
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            -- (IS DISTINCT FROM: a NULL expected version must not pass.)
            IF v_quote.version IS DISTINCT FROM p_expected_version THEN
                RAISE EXCEPTION 'Quote conversion failed - version mismatch on quote % (expected %, is %)',
                    p_quote_id, p_expected_version, v_quote.version
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            IF v_quote.quote_status IS DISTINCT FROM 'accepted' THEN
                RAISE EXCEPTION 'Quote conversion failed - quote % is %, not accepted',
                    p_quote_id, v_quote.quote_status
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;
            -- (The seed failed here with a bare not-null violation on shipments.service_id.)
            IF v_quote.service_id IS NULL THEN
                RAISE EXCEPTION 'Quote conversion failed - quote % has no freight service', p_quote_id
                    USING ERRCODE = 'object_not_in_prerequisite_state';
            END IF;

            v_tracking_number := generate_tracking_number();

            -- CHANGE: the seed copied only the parties, route, service and price; the quote's cargo
            -- and residential flag are copied too (they were lost). amount_due starts at the total
            -- (nothing paid yet), consistently with process_payment.
            INSERT INTO shipments (
                tracking_number, user_id, quote_id, service_id,
                origin_country_id, destination_country_id, is_residential_delivery,
                cargo_description, cargo_weight, cargo_weight_unit, cargo_volume, cargo_volume_unit,
                total_cost, amount_due
            ) VALUES (
                v_tracking_number, v_quote.user_id, v_quote.quote_id, v_quote.service_id,
                v_quote.origin_country_id, v_quote.destination_country_id, v_quote.is_residential,
                v_quote.cargo_description, v_quote.cargo_weight, v_quote.cargo_weight_unit,
                v_quote.cargo_volume, v_quote.cargo_volume_unit,
                v_quote.quoted_price, v_quote.quoted_price
            )
            RETURNING shipment_id INTO v_shipment_id;

            -- FIX (seed bug): no `version = version + 1`: the version trigger bumps it.
            UPDATE quotes
            SET quote_status = 'converted',
                converted_to_shipment_id = v_shipment_id,
                converted_at = CURRENT_TIMESTAMP
            WHERE quote_id = p_quote_id;

            UPDATE tracking_numbers
            SET shipment_id = v_shipment_id,
                is_used = TRUE,
                used_at = CURRENT_TIMESTAMP
            WHERE tracking_number = v_tracking_number;

            RETURN v_shipment_id;
        END;
        $$ LANGUAGE plpgsql;

        -- Record a completed payment of p_amount on a shipment, idempotently by p_idempotency_key:
        -- a replay returns the first call's transaction and changes nothing. p_currency defaults to
        -- the shipment's currency. Returns the transaction id.
        CREATE FUNCTION process_payment(
            p_shipment_id UUID,
            p_amount DECIMAL,
            p_idempotency_key VARCHAR,
            p_currency VARCHAR DEFAULT NULL
        ) RETURNS UUID AS $$
        DECLARE
            v_shipment shipments%ROWTYPE;
            v_amount DECIMAL(12, 2);
            v_currency VARCHAR(3);
            v_transaction_id UUID;
            v_existing payment_transactions%ROWTYPE;
            v_paid DECIMAL(12, 2);
        BEGIN
            IF p_amount IS NULL OR p_amount <= 0 THEN
                RAISE EXCEPTION 'process_payment: amount must be > 0 (got %)', p_amount
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF p_idempotency_key IS NULL THEN
                RAISE EXCEPTION 'process_payment: an idempotency key is required'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            v_amount := round(p_amount, 2);  -- what the numeric(12,2) columns will store

            -- FIX (seed bug): lock the shipment row BEFORE inserting the transaction (the seed
            -- checked idempotency first, unlocked), and fail clearly on an unknown shipment (the
            -- seed's PERFORM locked nothing and the INSERT failed on the foreign key).
            SELECT * INTO v_shipment FROM shipments WHERE shipment_id = p_shipment_id FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'process_payment: shipment % does not exist', p_shipment_id
                    USING ERRCODE = 'no_data_found';
            END IF;

            -- FIX (seed bug): the currency was hard-coded 'USD'. It is a parameter now, defaulting
            -- to the shipment's; a payment in another currency than the shipment's is refused
            -- (amount_paid is kept in the shipment's currency, there is no conversion here).
            v_currency := COALESCE(p_currency, v_shipment.currency);
            IF v_shipment.currency IS NOT NULL AND v_currency IS DISTINCT FROM v_shipment.currency THEN
                RAISE EXCEPTION 'process_payment: currency % differs from the shipment''s (%)',
                    v_currency, v_shipment.currency
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;

            -- FIX (seed bug): the seed's SELECT-then-INSERT on the idempotency key raced: two
            -- concurrent calls both found nothing and the second failed on the unique key (or,
            -- without it, paid twice). INSERT ... ON CONFLICT DO NOTHING is the atomic test.
            INSERT INTO payment_transactions (
                shipment_id, idempotency_key, amount,
                currency, transaction_type, transaction_status, processed_at
            ) VALUES (
                p_shipment_id, p_idempotency_key, v_amount,
                v_currency, 'payment', 'completed', CURRENT_TIMESTAMP
            )
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING transaction_id INTO v_transaction_id;

            IF v_transaction_id IS NULL THEN
                -- Already processed: return it, leave the shipment alone. A key reused for another
                -- payment is an error, not a silent success.
                SELECT * INTO v_existing FROM payment_transactions
                WHERE idempotency_key = p_idempotency_key;
                IF v_existing.shipment_id <> p_shipment_id
                   OR v_existing.amount <> v_amount
                   OR v_existing.currency IS DISTINCT FROM v_currency THEN
                    RAISE EXCEPTION 'process_payment: idempotency key % was used for another payment (%)',
                        p_idempotency_key, v_existing.transaction_id
                        USING ERRCODE = 'unique_violation';
                END IF;
                RETURN v_existing.transaction_id;
            END IF;

            v_paid := v_shipment.amount_paid + v_amount;
            IF v_shipment.total_cost IS NULL OR v_paid > v_shipment.total_cost THEN
                RAISE EXCEPTION 'process_payment: % would bring shipment % to % paid of a total of %',
                    v_amount, p_shipment_id, v_paid, COALESCE(v_shipment.total_cost::TEXT, 'NULL')
                    USING ERRCODE = 'check_violation';
            END IF;

            -- FIX (seed bug): no `version = version + 1`: the version trigger bumps it.
            UPDATE shipments
            SET amount_paid = v_paid,
                amount_due = total_cost - v_paid,
                payment_status = CASE WHEN v_paid >= total_cost THEN 'paid' ELSE 'partial' END
            WHERE shipment_id = p_shipment_id;

            RETURN v_transaction_id;
        END;
        $$ LANGUAGE plpgsql;
        """
    )

    # ---------------------------------------------------------------------------------------------
    # Materialized views (refreshed CONCURRENTLY, hence their unique indexes).
    # ---------------------------------------------------------------------------------------------
    op.execute(
        """
        CREATE MATERIALIZED VIEW active_countries AS
        SELECT country_id, country_code, country_name, region
        FROM countries
        WHERE is_active = TRUE;

        -- (Named explicitly; the seed's unnamed index gets this name from PostgreSQL anyway.)
        CREATE UNIQUE INDEX active_countries_country_code_idx ON active_countries(country_code);

        CREATE MATERIALIZED VIEW shipment_statistics AS
        SELECT
            DATE_TRUNC('day', created_at) AS date,
            shipment_status,
            COUNT(*) AS count,
            AVG(total_cost) AS avg_cost
        FROM shipments
        GROUP BY DATE_TRUNC('day', created_at), shipment_status;

        CREATE UNIQUE INDEX shipment_statistics_date_shipment_status_idx
            ON shipment_statistics(date, shipment_status);
        """
    )


def downgrade() -> None:
    # Dependents first: views, then tables from the leaves up (dropping a partitioned table drops
    # its partitions, whoever created them), then the sequence and the functions. No CASCADE: an
    # object created outside this migration that depends on these makes the downgrade fail
    # loudly instead of being dropped silently.
    op.execute(
        """
        DROP MATERIALIZED VIEW IF EXISTS shipment_statistics;
        DROP MATERIALIZED VIEW IF EXISTS active_countries;

        DROP TABLE IF EXISTS audit_log;
        DROP TABLE IF EXISTS notification_queue;
        DROP TABLE IF EXISTS payment_transactions;
        DROP TABLE IF EXISTS shipment_reservations;
        DROP TABLE IF EXISTS capacity_bookings;
        DROP TABLE IF EXISTS tracking_event_external_ids;
        DROP TABLE IF EXISTS shipment_tracking_events;
        DROP TABLE IF EXISTS shipments;
        DROP TABLE IF EXISTS tracking_numbers;
        DROP TABLE IF EXISTS quotes;
        DROP TABLE IF EXISTS freight_services;
        DROP TABLE IF EXISTS countries;
        DROP TABLE IF EXISTS users;

        DROP SEQUENCE IF EXISTS tracking_number_seq;

        DROP FUNCTION IF EXISTS process_payment(UUID, DECIMAL, VARCHAR, VARCHAR);
        DROP FUNCTION IF EXISTS convert_quote_to_shipment(UUID, INTEGER);
        DROP FUNCTION IF EXISTS reserve_capacity(INTEGER, DATE, DECIMAL, DECIMAL);
        DROP FUNCTION IF EXISTS register_external_tracking_event();
        DROP FUNCTION IF EXISTS track_status_change();
        DROP FUNCTION IF EXISTS generate_tracking_number();
        DROP FUNCTION IF EXISTS increment_version();
        """
    )
