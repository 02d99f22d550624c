""" Insert many records of one model in one statement, the way ``BaseModel._create`` writes them.

The import creates e-mails (``mail.message``) and sync records by the thousand. Through ``create()`` the ORM
spends most of its time per record, not in SQL: defaults looked up per record, every stored field put in the
cache, and for ``mail.message`` the cached inverses of ``res_id`` checked against every ``mail.thread`` model
of the database (bench/bench_backfill.py --profile: the ORM's own work was half of the time of
``mail.message.create``, the sanitizer and SQL the other half).

:func:`insert_records` keeps what makes the rows right and leaves the per-record bookkeeping out:

- each value goes through its field's ``convert_to_column_insert``, as in ``_create``: HTML is sanitized by the
  field's own sanitizer with the field's options, relational values become ids;
- the defaults are those of ``default_get``, asked once for the batch;
- many2many values (``Command.set`` / ``Command.link`` only) are written to the relation table;
- stored computed fields and the fields that depend on the new records are marked to recompute
  (``modified(create=True)``), the values given protected, constraints checked, as ``_create`` does;
- nothing is put in the cache: the model's cache is invalidated, and the next read loads the rows.

It bypasses the model's ``create()`` override, so it is only for models whose override does nothing the
caller needs, or whose needs the caller meets itself. ``mail.message.create`` adds a Message-Id and a reply-to
when they are missing (the import gives both), turns base64 images of the body into attachments (the import
creates bodies with ``data:image`` URLs through ``create()``) and checks access to attachments of other
documents (the import links only the files it created on the same conversation). The conversations
(``mail.thread``) are created with tracking, following and the creation note all off, where ``create()`` of
``mail.thread`` does nothing beyond the ORM's.

A field given in some rows and not in others is written empty (not its default) in the others.
"""
from odoo.fields import Command
from odoo.tools import SQL

LOG_ACCESS = ('create_uid', 'create_date', 'write_uid', 'write_date')


def insert_records(model, values_list, sanitized=()):
    """ Insert ``values_list`` as new records of ``model`` in one ``INSERT`` (plus one per many2many field).

    :param model: An empty recordset of the model, with the environment to write as.
    :param list values_list: Field values as for ``create``; each row may give other fields.
    :param sanitized: HTML fields whose values went through the field's own sanitizer already
        (``tools.sanitize.field_sanitizer``): they are not sanitized a second time.
    :return: The new records, in the order of ``values_list``.
    """
    if not values_list:
        return model.browse()
    env = model.env
    given = {name for values in values_list for name in values}
    unknown = given - set(model._fields)
    if unknown:
        raise ValueError("insert_records(%s): unknown fields %s" % (model._name, sorted(unknown)))
    columns = sorted(name for name in given if model._fields[name].column_type and name not in LOG_ACCESS)
    many2many = sorted(name for name in given if model._fields[name].type == 'many2many')
    stored = [name for name, field in model._fields.items()
              if field.store and field.column_type and name not in LOG_ACCESS and name != 'id']
    defaults = {name: value for name, value in model.default_get([name for name in stored if name not in given])
                .items() if name in model._fields and model._fields[name].column_type}
    columns += sorted(defaults)
    if any(model._fields[name].type != 'html' for name in sanitized):
        raise ValueError("insert_records(%s): sanitized=%s must name HTML fields" % (model._name, sanitized))
    converters = [(name, model._fields[name].convert_to_column_insert, name not in sanitized) for name in columns]

    env.flush_all()   # what was written before must be in the database before rows that may depend on it
    log_access = LOG_ACCESS if model._log_access else ()
    now, uid = env.cr.now(), env.uid
    # One flat list of parameters for a "(%s, ..., %s), ..." template: building an SQL object per value cost
    # more than converting the values (bench/bench_backfill.py --profile).
    params = []
    for values in values_list:
        full = {**defaults, **values}
        params.extend(convert(full.get(name, False), model, full, validate) for name, convert, validate in converters)
        if log_access:
            params.extend((uid, now, uid, now))
    row = '(%s)' % ', '.join(['%s'] * (len(columns) + len(log_access)))
    env.cr.execute(SQL(
        'INSERT INTO %s (%s) VALUES %s RETURNING id',
        SQL.identifier(model._table),
        SQL(', ').join(SQL.identifier(name) for name in (*columns, *log_access)),
        SQL(', '.join([row] * len(values_list)), *params),
    ))
    ids = [row[0] for row in env.cr.fetchall()]
    records = model.browse(ids)

    for name in many2many:
        field = model._fields[name]
        pairs = [(record_id, target) for record_id, values in zip(ids, values_list)
                 for target in _many2many_ids(values.get(name))]
        if pairs:
            env.cr.execute(SQL(
                'INSERT INTO %s (%s, %s) VALUES %s ON CONFLICT DO NOTHING',
                SQL.identifier(field.relation), SQL.identifier(field.column1), SQL.identifier(field.column2),
                SQL(', ').join(SQL('(%s, %s)', record_id, target) for record_id, target in pairs),
            ))

    model.invalidate_model()
    protected = [model._fields[name] for name in (*given, *defaults)]
    with env.protecting(protected, records):
        records.modified(model._fields, create=True)
    records._validate_fields([*given, *defaults])
    return records


def _many2many_ids(commands):
    ids = []
    for command in commands or ():
        if command[0] == Command.SET:
            ids.extend(command[2])
        elif command[0] == Command.LINK:
            ids.append(command[1])
        else:
            raise ValueError("insert_records: only Command.set and Command.link are supported for many2many")
    return ids
