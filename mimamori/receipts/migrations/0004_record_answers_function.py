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
    v_in_range boolean;
    v_changed boolean;
    v_answers jsonb;
BEGIN
    SELECT d.id, d.broadcast_id, jsonb_array_length(b.answers), b.answers_closed_at,
           (SELECT bool_and(a >= 0 AND a < jsonb_array_length(b.answers)) FROM unnest(p_answers) a)
      INTO v_delivery, v_broadcast, v_choices, v_closed, v_in_range
      FROM broadcasts_delivery d JOIN broadcasts_broadcast b ON b.id = d.broadcast_id
     WHERE d.confirmation_token = p_token AND b.request_confirmation
       AND COALESCE(b.send_requested_at, b.created_at) > p_oldest;
    IF NOT FOUND OR v_choices = 0 THEN
        RETURN jsonb_build_object('state', 'unknown');
    END IF;
    IF v_closed IS NOT NULL THEN
        RETURN jsonb_build_object('state', 'closed');
    END IF;
    IF NOT COALESCE(v_in_range, true) THEN
        RETURN jsonb_build_object('state', 'range');
    END IF;
    -- The lock that keeps the counters exact: every writer of a receipt of an answer
    -- broadcast (only this function, on PostgreSQL: the bare confirmation refuses them) holds
    -- the lock of each of its children's audience groups, taken in id order (no deadlock between
    -- two mails whose children share classes) and held to the end of the transaction. An
    -- advisory lock, not the group row's FOR UPDATE: it writes nothing to the table (a row lock
    -- dirties the row's page and logs it, and the counters below write the row again).
    -- Namespace 1501 (issue 15, answer counters); the group id folded into int4.
    -- The statement below then reads what the previous holder wrote: a VOLATILE function takes
    -- a new snapshot per statement.
    PERFORM pg_advisory_xact_lock(1501, mod(groups.id, 2147483647)::integer)
       FROM (SELECT DISTINCT r.group_id AS id FROM broadcasts_recipient r
              WHERE r.delivery_id = v_delivery AND r.registrant_id = ANY (p_registrants)
              ORDER BY 1) groups;
    -- The rest in one statement on one snapshot, taken after the locks: the children with their
    -- choices, their receipts before, the receipts written (new, or a changed answer), and the
    -- counters moved by exactly those. A counter that only grows is upserted; one that only
    -- shrinks exists already (it counts the old answer); one whose moves cancel is left alone.
    WITH chosen AS (
        SELECT r.registrant_id, r.group_id, c.answer
          FROM unnest(p_registrants, p_answers) AS c (registrant_id, answer)
          JOIN broadcasts_recipient r ON r.delivery_id = v_delivery AND r.registrant_id = c.registrant_id
    ), before AS (
        SELECT rc.registrant_id, rc.answer FROM receipts_receipt rc
         WHERE rc.broadcast_id = v_broadcast AND rc.registrant_id IN (SELECT registrant_id FROM chosen)
    ), written AS (
        INSERT INTO receipts_receipt AS rc
               (broadcast_id, registrant_id, delivery_id, confirmed_at, answer, answered_at)
        SELECT v_broadcast, registrant_id, v_delivery, p_now, answer, p_now FROM chosen
        ON CONFLICT (broadcast_id, registrant_id) DO UPDATE
           SET answer = EXCLUDED.answer, answered_at = EXCLUDED.answered_at
         WHERE rc.answer IS DISTINCT FROM EXCLUDED.answer
        RETURNING rc.registrant_id
    ), moves AS (
        SELECT group_id, answer, SUM(delta) AS delta FROM (
            SELECT c.group_id, c.answer, 1 AS delta FROM chosen c JOIN written w USING (registrant_id)
            UNION ALL
            SELECT c.group_id, b.answer, -1 FROM chosen c
              JOIN written w USING (registrant_id) JOIN before b USING (registrant_id)
             WHERE b.answer IS NOT NULL
        ) m GROUP BY group_id, answer
    ), grown AS (
        INSERT INTO receipts_answercount AS n (group_id, answer, registrants)
        SELECT group_id, answer, delta FROM moves WHERE delta > 0
        ON CONFLICT (group_id, answer) DO UPDATE SET registrants = n.registrants + EXCLUDED.registrants
    ), shrunk AS (
        UPDATE receipts_answercount n SET registrants = n.registrants + m.delta
          FROM moves m WHERE m.delta < 0 AND n.group_id = m.group_id AND n.answer = m.answer
    ), confirmed AS (
        UPDATE broadcasts_audiencegroup g SET confirmed = g.confirmed + f.n
          FROM (SELECT c.group_id, COUNT(*) AS n FROM chosen c JOIN written w USING (registrant_id)
                 WHERE c.registrant_id NOT IN (SELECT registrant_id FROM before)
                 GROUP BY c.group_id) f
         WHERE g.id = f.group_id
    )
    SELECT (SELECT COUNT(*) > 0 FROM written),
           COALESCE((SELECT jsonb_object_agg(registrant_id::text, answer) FROM chosen), '{}'::jsonb)
      INTO v_changed, v_answers;
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
