// Runs one SQL statement in an in-memory DuckDB and prints the result rows
// as JSON (BigInts as numbers when safe, else strings). Used by tests to read
// bpfsnap's Parquet chunks with an implementation independent of ours.
import { DuckDBInstance } from '@duckdb/node-api';

const sql = process.argv[2];
if (!sql) {
  console.error('usage: node query.mjs "SQL"');
  process.exit(2);
}
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(sql);
const rows = reader.getRowObjectsJson();
process.stdout.write(JSON.stringify(rows));
