"""The PostgreSQL function behind receipts/answering.py's record_answers: one round trip an
answer (SQLite keeps the ORM path). Table names are the models' defaults."""

from __future__ import annotations

from typing import Any

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION mimamori_record_answers(
    p_token text, p_oldest timestamptz, p_now timestamptz, p_registrants bigint[], p_answers integer[]
) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_delivery bigint;
    v_broadcast bigint;
    v_choices integer;
    v_closed timestamptz;
    v_group bigint;
    v_old integer;
    v_had boolean;
    v_changed boolean := false;
    v_answers jsonb := '{}'::jsonb;
BEGIN
    SELECT d.id, d.broadcast_id, jsonb_array_length(b.answers), b.answers_closed_at
      INTO v_delivery, v_broadcast, v_choices, v_closed
      FROM broadcasts_delivery d JOIN broadcasts_broadcast b ON b.id = d.broadcast_id
     WHERE d.confirmation_token = p_token AND b.request_confirmation
       AND COALESCE(b.send_requested_at, b.created_at) > p_oldest;
    IF NOT FOUND OR v_choices = 0 THEN
        RETURN jsonb_build_object('state', 'unknown');
    END IF;
    IF v_closed IS NOT NULL THEN
        RETURN jsonb_build_object('state', 'closed');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_answers) a WHERE a IS NULL OR a < 0 OR a >= v_choices) THEN
        RETURN jsonb_build_object('state', 'range');
    END IF;
    -- The lock that keeps the counters exact: every writer of a receipt of this broadcast's
    -- children takes its group's row first, in id order (no deadlock between two mails whose
    -- children share classes). Each statement below then reads what the previous holder wrote:
    -- a VOLATILE function takes a new snapshot per statement.
    PERFORM 1 FROM broadcasts_audiencegroup g
     WHERE g.id IN (SELECT r.group_id FROM broadcasts_recipient r
                     WHERE r.delivery_id = v_delivery AND r.registrant_id = ANY (p_registrants))
     ORDER BY g.id FOR UPDATE;
    FOR i IN 1 .. COALESCE(array_length(p_registrants, 1), 0) LOOP
        SELECT r.group_id INTO v_group FROM broadcasts_recipient r
         WHERE r.delivery_id = v_delivery AND r.registrant_id = p_registrants[i];
        CONTINUE WHEN NOT FOUND;  -- a child this mail does not name
        SELECT true, rc.answer INTO v_had, v_old FROM receipts_receipt rc
         WHERE rc.broadcast_id = v_broadcast AND rc.registrant_id = p_registrants[i];
        v_answers := v_answers || jsonb_build_object(p_registrants[i]::text, p_answers[i]);
        IF v_had IS NULL THEN
            INSERT INTO receipts_receipt (broadcast_id, registrant_id, delivery_id, confirmed_at, answer, answered_at)
            VALUES (v_broadcast, p_registrants[i], v_delivery, p_now, p_answers[i], p_now);
            UPDATE broadcasts_audiencegroup SET confirmed = confirmed + 1 WHERE id = v_group;
        ELSIF v_old IS NOT DISTINCT FROM p_answers[i] THEN
            v_had := NULL;
            CONTINUE;
        ELSE
            UPDATE receipts_receipt SET answer = p_answers[i], answered_at = p_now
             WHERE broadcast_id = v_broadcast AND registrant_id = p_registrants[i];
            IF v_old IS NOT NULL THEN
                UPDATE receipts_answercount SET registrants = registrants - 1
                 WHERE group_id = v_group AND answer = v_old;
            END IF;
        END IF;
        INSERT INTO receipts_answercount (group_id, answer, registrants) VALUES (v_group, p_answers[i], 1)
        ON CONFLICT (group_id, answer) DO UPDATE SET registrants = receipts_answercount.registrants + 1;
        v_changed := true;
        v_had := NULL;
        v_old := NULL;
    END LOOP;
    RETURN jsonb_build_object('state', 'ok', 'changed', v_changed, 'answers', v_answers);
END;
$$;
"""

DROP = "DROP FUNCTION IF EXISTS mimamori_record_answers(text, timestamptz, timestamptz, bigint[], integer[])"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("receipts", "0003_answers"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
