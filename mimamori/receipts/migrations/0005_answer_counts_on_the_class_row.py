"""The answer counters move from their own rows (AnswerCount, one per class and answer) onto the
class row (AudienceGroup.answer_0 … answer_5, broadcasts migration 0010), and the PostgreSQL
function behind receipts/answering.py's record_answers is replaced by one that moves them there,
without advisory locks (docs/performance.md, "Answer storm"). Table names are the models'
defaults.

0004's function is replaced here, not edited in place: deployed databases have run 0004, and
the old function writes receipts_answercount, which this migration drops."""

from __future__ import annotations

import importlib
from typing import Any

from django.db import migrations, models

FUNCTION = """
CREATE OR REPLACE FUNCTION mimamori_record_answers(
    p_token text, p_oldest timestamptz, p_now timestamptz, p_registrants bigint[], p_answers integer[]
) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_delivery bigint;
    v_broadcast bigint;
    v_choices integer;
    v_closed timestamptz;
    v_in_range boolean;
    v_groups bigint[];
    v_confirmed integer[];
    v_moves integer[];  -- per group (in v_groups' order), the moves of answer_0 … answer_5
    v_named integer;
BEGIN
    SELECT d.id, d.broadcast_id, jsonb_array_length(b.answers), b.answers_closed_at,
           (SELECT bool_and(a >= 0 AND a < jsonb_array_length(b.answers)) FROM unnest(p_answers) a)
      INTO v_delivery, v_broadcast, v_choices, v_closed, v_in_range
      FROM broadcasts_delivery d JOIN broadcasts_broadcast b ON b.id = d.broadcast_id
     WHERE d.confirmation_token = p_token AND b.request_confirmation
       AND COALESCE(b.send_requested_at, b.created_at) > p_oldest;
    IF NOT FOUND OR v_choices = 0 THEN
        RETURN -1;  -- unknown, expired, or no answer asked
    END IF;
    IF v_closed IS NOT NULL THEN
        RETURN -2;  -- answering closed
    END IF;
    IF NOT COALESCE(v_in_range, true) THEN
        RETURN -3;  -- a choice out of range
    END IF;
    -- Then what a confirmation writes, the receipts and each child's class row, in two
    -- statements. The counters stay exact with no lock of their own:
    --  * The upsert's DO UPDATE runs on the receipt's locked, latest row version, even one a
    --    concurrent answer committed after this statement's snapshot (which a CTE reading the
    --    receipts "before" would miss), and notes that version's answer in `replaced`; RETURNING
    --    hands it on. So two guardians answering for one child take turns on the receipt, and
    --    each moves the counters from the answer the other left. A row inserted (xmax = 0: no
    --    receipt before) is a child confirmed; a receipt of an answer broadcast always holds an
    --    answer (the bare confirmation refuses them), so an update always moves one away.
    --  * The class rows' UPDATE adds to their latest version (READ COMMITTED re-reads a row a
    --    concurrent transaction changed), so answers for different children of one class add up.
    --  * It is a statement of its own, not a third CTE: PostgreSQL checks a new row's CHECK
    --    constraints before it finds that the row it computed from is outdated, so a CTE, on the
    --    snapshot taken before this answer waited for the receipt's previous writer, would take
    --    one from that writer's counter before it sees that writer's one added to it, and fail
    --    the counter's >= 0 (the concurrency test in tests/test_answer_page.py did). This
    --    statement's snapshot, taken after the upsert, sees every answer whose receipt it changed.
    --  * Locks in one order: the receipts in registrant order, the class rows in id order, so
    --    two mails that name the same children or classes wait for each other, never deadlock.
    -- An answer that changes nothing (the same choice again) writes no row at all.
    WITH chosen AS (
        SELECT r.registrant_id, r.group_id, c.answer
          FROM unnest(p_registrants, p_answers) AS c (registrant_id, answer)
          JOIN broadcasts_recipient r ON r.delivery_id = v_delivery AND r.registrant_id = c.registrant_id
    ), written AS (
        INSERT INTO receipts_receipt AS rc
               (broadcast_id, registrant_id, delivery_id, confirmed_at, answer, answered_at)
        SELECT v_broadcast, registrant_id, v_delivery, p_now, answer, p_now FROM chosen
         ORDER BY registrant_id
        ON CONFLICT (broadcast_id, registrant_id) DO UPDATE
           SET replaced = rc.answer, answer = EXCLUDED.answer, answered_at = EXCLUDED.answered_at
         WHERE rc.answer IS DISTINCT FROM EXCLUDED.answer
        RETURNING rc.registrant_id, rc.answer, rc.replaced, rc.xmax = 0 AS inserted
    ), moves AS (
        SELECT c.group_id,
               COUNT(*) FILTER (WHERE w.inserted) AS confirmed,
               ARRAY[
                   COUNT(*) FILTER (WHERE w.answer = 0) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 0),
                   COUNT(*) FILTER (WHERE w.answer = 1) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 1),
                   COUNT(*) FILTER (WHERE w.answer = 2) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 2),
                   COUNT(*) FILTER (WHERE w.answer = 3) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 3),
                   COUNT(*) FILTER (WHERE w.answer = 4) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 4),
                   COUNT(*) FILTER (WHERE w.answer = 5) - COUNT(*) FILTER (WHERE NOT w.inserted AND w.replaced = 5)
               ]::integer[] AS answers
          FROM written w JOIN chosen c USING (registrant_id)
         GROUP BY c.group_id
    )
    SELECT (SELECT array_agg(group_id ORDER BY group_id) FROM moves),
           (SELECT array_agg(confirmed ORDER BY group_id) FROM moves),
           (SELECT array_agg(answers ORDER BY group_id) FROM moves),
           (SELECT COUNT(*) FROM chosen)
      INTO v_groups, v_confirmed, v_moves, v_named;
    IF v_groups IS NOT NULL THEN
        UPDATE broadcasts_audiencegroup g
           SET confirmed = g.confirmed + v_confirmed[m.i],
               answer_0 = g.answer_0 + v_moves[m.i][1], answer_1 = g.answer_1 + v_moves[m.i][2],
               answer_2 = g.answer_2 + v_moves[m.i][3], answer_3 = g.answer_3 + v_moves[m.i][4],
               answer_4 = g.answer_4 + v_moves[m.i][5], answer_5 = g.answer_5 + v_moves[m.i][6]
          FROM generate_subscripts(v_groups, 1) AS m (i)
         WHERE g.id = v_groups[m.i];
    END IF;
    -- Recorded: the children of the mail the answer named, twice, plus one if a row changed (a
    -- plain number, which costs the web process less to read than a JSON object).
    RETURN v_named * 2 + (v_groups IS NOT NULL)::integer;
END;
$$;
"""


def _before() -> Any:
    return importlib.import_module("mimamori.receipts.migrations.0004_record_answers_function")


def replace_function(apps: Any, schema_editor: Any) -> None:
    # Dropped first: the function's result changes type (jsonb to integer), which REPLACE refuses.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_before().DROP)
        schema_editor.execute(FUNCTION)


def restore_function(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_before().DROP)
        schema_editor.execute(_before().FUNCTION)


def copy_to_class_rows(apps: Any, schema_editor: Any) -> None:
    answer_count = apps.get_model("receipts", "AnswerCount")
    audience_group = apps.get_model("broadcasts", "AudienceGroup")
    # Columns left over from an earlier forward run (then unapplied) start again from 0.
    fields = [f"answer_{index}" for index in range(6)]
    audience_group.objects.exclude(**{name: 0 for name in fields}).update(**{name: 0 for name in fields})
    rows = answer_count.objects.filter(registrants__gt=0).order_by().values_list("group_id", "answer", "registrants")
    for group_id, answer, registrants in rows.iterator():
        audience_group.objects.filter(pk=group_id).update(**{f"answer_{answer}": registrants})


def copy_to_counter_rows(apps: Any, schema_editor: Any) -> None:
    answer_count = apps.get_model("receipts", "AnswerCount")
    audience_group = apps.get_model("broadcasts", "AudienceGroup")
    fields = [f"answer_{index}" for index in range(6)]
    counted = audience_group.objects.exclude(**{name: 0 for name in fields}).order_by()
    for group_id, *counts in counted.values_list("pk", *fields).iterator():
        answer_count.objects.bulk_create(
            answer_count(group_id=group_id, answer=index, registrants=count)
            for index, count in enumerate(counts)
            if count
        )


class Migration(migrations.Migration):
    dependencies = [
        ("broadcasts", "0010_answer_counts"),
        ("receipts", "0004_record_answers_function"),
    ]

    operations = [
        migrations.AddField(
            model_name="receipt",
            name="replaced",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(copy_to_class_rows, copy_to_counter_rows, elidable=False),
        migrations.RunPython(replace_function, restore_function, elidable=False),
        migrations.DeleteModel(name="AnswerCount"),
    ]
