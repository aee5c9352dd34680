"""PostgreSQL functions known to have no side effects, and the keywords that precede a parenthesis in SQL.

A read calling only these functions may run outside a transaction on the primary (:mod:`litestar_db._classify`).
The list follows PostgreSQL 15's documentation chapters 9.3-9.27 (mathematical, string, pattern matching,
formatting, date/time, enum, geometric, network, text search, UUID, XML output, JSON, array, range, aggregate,
window, set-returning and system information functions), less every function that writes, locks, changes a
setting or runs SQL given as text. A function not listed (your own, an extension's) is not refused: such a read
runs where PostgreSQL enforces read-only.

No Litestar import here.
"""

from __future__ import annotations

__all__ = ("NOT_FUNCTIONS", "PURE_FUNCTIONS")

PURE_FUNCTIONS = frozenset(
    """
    daterange tsrange tstzrange int4range int8range numrange currval lastval pg_get_userbyid pg_table_is_visible
    abbrev abs acos acosd age array_agg array_append array_cat array_dims array_fill array_length array_lower
    array_ndims array_position array_positions array_prepend array_remove array_replace array_to_json
    array_to_string array_to_tsvector array_upper ascii asin asind atan atan2 atand avg bit_and bit_length bit_or
    bit_xor bool_and bool_or broadcast btrim cardinality cbrt ceil ceiling char_length character_length chr
    clock_timestamp coalesce col_description concat concat_ws convert convert_from convert_to corr cos cosd cosh cot
    count covar_pop covar_samp cume_dist current_catalog current_database current_date current_query current_role
    current_schema current_schemas current_setting current_time current_timestamp current_user date_bin date_part
    date_trunc decode degrees dense_rank div encode enum_first enum_last enum_range every exp extract factorial
    family first_value floor format format_type gcd gen_random_uuid generate_series generate_subscripts get_bit
    get_byte greatest grouping has_column_privilege has_database_privilege has_schema_privilege has_table_privilege
    host hostmask inet_client_addr inet_client_port inet_merge inet_same_family inet_server_addr inet_server_port
    initcap isempty isfinite json_agg json_array_elements json_array_elements_text json_array_length
    json_build_array json_build_object json_each json_each_text json_extract_path json_extract_path_text json_object
    json_object_agg json_object_keys json_populate_record json_populate_recordset json_strip_nulls json_to_record
    json_to_recordset json_typeof jsonb_agg jsonb_array_elements jsonb_array_elements_text jsonb_array_length
    jsonb_build_array jsonb_build_object jsonb_each jsonb_each_text jsonb_extract_path jsonb_extract_path_text
    jsonb_insert jsonb_object jsonb_object_agg jsonb_object_keys jsonb_path_exists jsonb_path_match jsonb_path_query
    jsonb_path_query_array jsonb_path_query_first jsonb_populate_record jsonb_populate_recordset jsonb_pretty
    jsonb_set jsonb_set_lax jsonb_strip_nulls jsonb_to_record jsonb_to_recordset jsonb_typeof justify_days
    justify_hours justify_interval lag last_value lcm lead least left length ln localtime localtimestamp log log10
    lower lower_inc lower_inf lpad ltrim make_date make_interval make_time make_timestamp make_timestamptz masklen
    max md5 min min_scale mod mode multirange netmask network normalize now nth_value ntile nullif num_nonnulls
    num_nulls numnode obj_description octet_length overlay percent_rank percentile_cont percentile_disc
    pg_backend_pid pg_blocking_pids pg_column_size pg_conf_load_time pg_current_wal_flush_lsn
    pg_current_wal_insert_lsn pg_current_wal_lsn pg_database_size pg_get_constraintdef pg_get_expr pg_get_indexdef
    pg_get_viewdef pg_indexes_size pg_is_in_recovery pg_is_wal_replay_paused pg_last_wal_receive_lsn
    pg_last_wal_replay_lsn pg_last_xact_replay_timestamp pg_postmaster_start_time pg_relation_size pg_size_pretty
    pg_table_size pg_total_relation_size pg_typeof pg_wal_lsn_diff phraseto_tsquery pi plainto_tsquery
    position power querytree quote_ident quote_literal quote_nullable radians random range_agg range_intersect_agg
    range_merge rank regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
    regexp_split_to_array regexp_split_to_table regexp_substr regr_avgx regr_avgy regr_count regr_intercept regr_r2
    regr_slope regr_sxx regr_sxy regr_syy repeat replace reverse right round row_number row_to_json rpad rtrim scale
    session_user set_masklen setweight sha224 sha256 sha384 sha512 sign sin sind sinh split_part sqrt starts_with
    statement_timestamp stddev stddev_pop stddev_samp string_agg string_to_array string_to_table strip strpos substr
    substring sum tan tand tanh text timeofday timezone to_ascii to_char to_date to_hex to_json to_jsonb to_number
    to_regclass to_regtype to_timestamp to_tsquery to_tsvector transaction_timestamp translate trim trim_array
    trim_scale trunc ts_debug ts_headline ts_lexize ts_parse ts_rank ts_rank_cd ts_token_type tsvector_to_array
    unistr unnest upper upper_inc upper_inf user uuid_generate_v4 var_pop var_samp variance version
    websearch_to_tsquery width_bucket xmlagg xmlcomment xmlconcat xmlelement xmlforest xmlparse xmlpi xmlroot
    xmlserialize xpath xpath_exists
    """.split()  # noqa: SIM905
)
"""Lower-case names (``pg_catalog`` or unqualified) of PostgreSQL functions without side effects."""

NOT_FUNCTIONS = frozenset(
    """
    all and any array as between bigint bit both by case cast char character coalesce dec decimal distinct else
    except exists extract float from group grouping having in int integer intersect interval lateral limit not
    nullif numeric offset on only or order overlay position precision real returning row select smallint some
    substring then time timestamp to trim union using values varchar when where window with
    """.split()  # noqa: SIM905
)
"""Keywords that may precede ``(`` and cannot name a function unquoted (PostgreSQL's reserved keywords and its
"cannot be function or type" ones): ``IN (``, ``VALUES (``, ``numeric(10, 2)``. ``OVER (`` and ``FILTER (`` after a
call's ``)`` are recognised by position; any other keyword-like name before ``(`` counts as a call."""
