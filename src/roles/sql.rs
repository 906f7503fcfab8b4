//! The statements of the role model, as text: `app db roles` runs them in one transaction or
//! prints them for `psql`, and `migrate` runs [`runtime_grants`] under its lock. Every
//! statement is idempotent, so running the whole set again changes nothing.

use super::{Login, Model, RoleName, Setup};

/// `"name"`, with any `"` doubled.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with any `'` doubled.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates a role with `options` unless it exists; either way it ends with those options.
fn ensure_role(role: &RoleName, options: &str) -> Vec<String> {
    vec![
        // language=PostgreSQL
        format!(
            "do $$ begin if not exists (select from pg_catalog.pg_roles where rolname = {}) \
             then create role {} {options}; end if; end $$",
            role.literal(),
            role.ident()
        ),
        // language=PostgreSQL
        format!("alter role {} {options}", role.ident()),
    ]
}

/// What no role of the model may do, whatever it was before.
const LESS_THAN_ADMIN: &str = "nosuperuser nocreaterole noreplication nobypassrls";

/// A login of the model: enabled, its password the verifier, a member of `group` only;
/// `createdb` for the restore drill's scratch database.
fn ensure_login(login: &Login, group: &RoleName, createdb: bool) -> Vec<String> {
    let db = if createdb { "createdb" } else { "nocreatedb" };
    let mut out = ensure_role(
        &login.name,
        &format!("login inherit {db} {LESS_THAN_ADMIN}"),
    );
    // The verifier is `SCRAM-SHA-256$<iterations>:<base64>$<base64>:<base64>`: no quote.
    out.push(format!(
        "alter role {} password {}",
        login.name.ident(),
        literal(login.verifier())
    ));
    out.push(format!("grant {} to {}", group.ident(), login.name.ident()));
    // A member of `group` only: a membership granted by hand (the API's login in the owner
    // role, say) would give it what the model denies it.
    // language=PostgreSQL
    out.push(format!(
        "do $$ declare r text; begin \
         for r in select m.roleid::regrole::text from pg_auth_members m \
         where m.member = {login}::regrole and m.roleid <> {group}::regrole loop \
         execute format('revoke %s from %I', r, {login}); end loop; end $$",
        login = login.name.literal(),
        group = group.literal(),
    ));
    out
}

/// The runtime role's privileges on what the schema holds now, and (default privileges) on
/// what the owner creates later: the API reads and writes rows, reads the history (for
/// `/ready` and `/api/info`), and nothing else. `owner` is who creates future objects; none:
/// the role running this.
pub(crate) fn runtime_grants(
    schema: &str,
    owner: Option<&RoleName>,
    runtime: &RoleName,
) -> Vec<String> {
    let s = ident(schema);
    let r = runtime.ident();
    let history = format!("{s}.flyway_schema_history");
    let for_role = owner
        .map(|o| format!("for role {} ", o.ident()))
        .unwrap_or_default();
    vec![
        // language=PostgreSQL
        format!("grant select, insert, update, delete on all tables in schema {s} to {r}"),
        // language=PostgreSQL
        format!("grant usage, select on all sequences in schema {s} to {r}"),
        // The history is the migrator's: the API only reads it.
        // language=PostgreSQL
        format!(
            "do $$ begin if to_regclass({}) is not null then \
             revoke insert, update, delete, truncate, references, trigger on {history} from {r}; \
             end if; end $$",
            literal(&history)
        ),
        // language=PostgreSQL
        format!(
            "alter default privileges {for_role}in schema {s} \
             grant select, insert, update, delete on tables to {r}"
        ),
        // language=PostgreSQL
        format!(
            "alter default privileges {for_role}in schema {s} grant usage, select on sequences to {r}"
        ),
    ]
}

/// Hands every table, view, sequence, function and type of `schema` that `from` owns over
/// to `to`. Not `reassign owned`: PostgreSQL refuses it for the bootstrap superuser (the
/// seed's `app_user`), which owns the system catalogs too. Tables first: a sequence a column
/// owns moves with its table (and `alter sequence` on it would fail).
fn adopt(schema: &str, from: &RoleName, to: &RoleName) -> String {
    let ns = format!("{}::regnamespace", literal(&ident(schema)));
    let owner = format!("{}::regrole", from.literal());
    let to = to.literal();
    // language=PostgreSQL
    format!(
        "do $$
declare r record;
begin
  for r in select c.oid::regclass::text as name,
                  case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                 when 'f' then 'foreign table' else 'table' end as kind
             from pg_catalog.pg_class c
            where c.relnamespace = {ns} and c.relowner = {owner}
              and c.relkind in ('r', 'p', 'v', 'm', 'f')
  loop
    execute format('alter %s %s owner to %I', r.kind, r.name, {to});
  end loop;
  for r in select c.oid::regclass::text as name from pg_catalog.pg_class c
            where c.relnamespace = {ns} and c.relowner = {owner} and c.relkind = 'S'
  loop
    execute format('alter sequence %s owner to %I', r.name, {to});
  end loop;
  for r in select p.oid::regprocedure::text as name,
                  case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate'
                                 else 'function' end as kind
             from pg_catalog.pg_proc p
            where p.pronamespace = {ns} and p.proowner = {owner}
  loop
    execute format('alter %s %s owner to %I', r.kind, r.name, {to});
  end loop;
  for r in select t.oid::regtype::text as name from pg_catalog.pg_type t
            where t.typnamespace = {ns} and t.typowner = {owner}
              and t.typtype in ('c', 'd', 'e', 'r')
              and (t.typrelid = 0
                   or (select c.relkind from pg_catalog.pg_class c where c.oid = t.typrelid) = 'c')
  loop
    execute format('alter type %s owner to %I', r.name, {to});
  end loop;
end $$"
    )
}

/// Everything `app db roles` runs, in order, as one transaction's statements.
pub(crate) fn setup(setup: &Setup) -> Vec<String> {
    let Model {
        schema,
        owner,
        runtime,
    } = &setup.model;
    let s = ident(schema);
    let nologin = format!("nologin nocreatedb {LESS_THAN_ADMIN}");
    let mut out = ensure_role(owner, &nologin);
    out.extend(ensure_role(runtime, &nologin));
    out.extend(ensure_login(&setup.app, runtime, setup.createdb));
    if let Some(migrate) = &setup.migrate {
        out.extend(ensure_login(migrate, owner, false));
    }
    if let Some(superuser) = &setup.superuser {
        out.push(format!(
            "alter role {} password {}",
            superuser.name.ident(),
            literal(superuser.verifier())
        ));
    }
    // language=PostgreSQL
    out.push(format!(
        "do $$ begin execute format('grant connect on database %I to %I, %I', \
         current_database(), {}, {}); end $$",
        owner.literal(),
        runtime.literal()
    ));
    // Before PostgreSQL 15 everyone could create in `public`; only the owner role may now.
    out.push(format!("revoke create on schema {s} from public"));
    out.push(format!(
        "grant usage, create on schema {s} to {}",
        owner.ident()
    ));
    out.push(format!("grant usage on schema {s} to {}", runtime.ident()));
    if let Some(from) = &setup.adopt_from {
        out.push(adopt(schema, from, owner));
    }
    out.extend(runtime_grants(schema, Some(owner), runtime));
    out
}

/// `app db roles retire`: the login can no longer log in, its password is gone, and its
/// sessions end (run it after `kubectl rollout status`: no pod uses it any more). Its
/// membership stays, so the next rotation enables it again with a new password.
pub(crate) fn retire(name: &RoleName) -> Vec<String> {
    vec![
        // language=PostgreSQL
        format!(
            "do $$ begin if not exists (select from pg_catalog.pg_roles where rolname = {0}) \
             then raise exception 'no role named %', {0}; end if; end $$",
            name.literal()
        ),
        // language=PostgreSQL
        format!("alter role {} nologin password null", name.ident()),
    ]
}

/// Ends the sessions of a retired login (after [`retire`] committed: a session that starts
/// in between is refused by then).
pub(crate) fn terminate(name: &RoleName) -> String {
    // language=PostgreSQL
    format!(
        "select count(pg_catalog.pg_terminate_backend(pid)) from pg_catalog.pg_stat_activity \
         where usename = {} and pid <> pg_catalog.pg_backend_pid()",
        name.literal()
    )
}

/// The statements as a script for `psql -v ON_ERROR_STOP=1`, in one transaction.
pub(crate) fn script(statements: &[String]) -> String {
    let mut out = String::from(
        "-- app db roles: the role model (docs/secrets.md, \"Database roles\"). Password\n\
         -- verifiers only, no password. Pipe into psql -v ON_ERROR_STOP=1.\n\
         begin;\n",
    );
    for statement in statements {
        out.push_str(statement);
        out.push_str(";\n");
    }
    out.push_str("commit;\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> RoleName {
        RoleName::parse(n, "test").unwrap()
    }

    #[test]
    fn setup_never_holds_the_password() {
        let password = "hunter2-plain";
        let model = Setup {
            model: Model {
                schema: "public".into(),
                owner: name("o"),
                runtime: name("r"),
            },
            app: Login::new(name("app_a"), password),
            migrate: Some(Login::new(name("mig_a"), password)),
            adopt_from: Some(name("app_user")),
            superuser: None,
            createdb: false,
        };
        let text = script(&setup(&model));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("SCRAM-SHA-256$4096:"), "{text}");
        assert!(text.contains("grant \"r\" to \"app_a\""), "{text}");
        assert!(text.contains("grant \"o\" to \"mig_a\""), "{text}");
        assert!(
            !format!("{model:?}").contains("SCRAM"),
            "Debug shows no verifier"
        );
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
