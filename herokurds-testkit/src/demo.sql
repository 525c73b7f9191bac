-- The demo's sample app: a small course catalogue with learners, shaped like
-- a real Django app's database on Heroku (owned by the non-superuser owner).
-- Loaded into the Heroku-like source cluster by `herokurds demo`.
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE enrollment_status AS ENUM ('audit', 'verified', 'passed', 'failed');

CREATE TABLE programs (
  id          serial PRIMARY KEY,
  title       text NOT NULL,
  slug        text NOT NULL UNIQUE,
  description text NOT NULL,
  image_key   text NOT NULL,
  live        boolean NOT NULL DEFAULT true
);
CREATE TABLE courses (
  id          serial PRIMARY KEY,
  program_id  integer NOT NULL REFERENCES programs(id) ON DELETE CASCADE,
  position    integer NOT NULL,
  title       text NOT NULL,
  UNIQUE (program_id, position)
);
CREATE TABLE learners (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email       citext NOT NULL UNIQUE,
  name        text NOT NULL,
  country     char(2) NOT NULL,
  profile     jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE enrollments (
  id          bigserial PRIMARY KEY,
  learner_id  bigint NOT NULL REFERENCES learners(id),
  course_id   integer NOT NULL REFERENCES courses(id),
  status      enrollment_status NOT NULL,
  grade       numeric(5,2) CHECK (grade BETWEEN 0 AND 100),
  enrolled_at timestamptz NOT NULL,
  UNIQUE (learner_id, course_id)
);
CREATE INDEX enrollments_course_status_idx ON enrollments (course_id, status);
CREATE TABLE certificates (
  id          bigserial PRIMARY KEY,
  enrollment_id bigint NOT NULL UNIQUE REFERENCES enrollments(id),
  hash        bytea NOT NULL,
  issued_at   timestamptz NOT NULL
);
CREATE SEQUENCE invoice_number_seq START 100000;
CREATE VIEW program_stats AS
  SELECT p.id, p.title, count(e.id) AS enrollments, avg(e.grade) AS average_grade
  FROM programs p JOIN courses c ON c.program_id = p.id LEFT JOIN enrollments e ON e.course_id = c.id
  GROUP BY p.id, p.title;

INSERT INTO programs (title, slug, description, image_key) VALUES
  ('Supply Chain Management', 'scm', 'Five courses and a capstone exam.', 'programs/scm.png'),
  ('Data, Economics, and Design of Policy', 'dedp', 'Evidence for policy, with data.', 'programs/dedp.png'),
  ('Statistics and Data Science', 'sds', 'Probability, statistics, machine learning.', 'programs/sds.png'),
  ('Finance', 'fin', 'Foundations of modern finance.', 'programs/fin.png');
INSERT INTO courses (program_id, position, title)
SELECT p.id, n, p.title || ' — Course ' || n FROM programs p, generate_series(1, 5) AS n;
INSERT INTO learners (email, name, country, profile, created_at)
SELECT 'learner' || i || '@example.com',
       (ARRAY['Zoë','José','Łukasz','Søren','Дмитрий','李雷','Ñandú','محمد'])[1 + i % 8] || ' ' || i,
       (ARRAY['US','IN','BR','DE','CN','EG','FR','MX'])[1 + i % 8],
       jsonb_build_object('newsletter', i % 3 = 0, 'languages', jsonb_build_array('en', 'es')),
       timestamptz '2018-01-01 00:00:00+00' + i * interval '47 minutes'
FROM generate_series(1, 5000) AS i;
INSERT INTO enrollments (learner_id, course_id, status, grade, enrolled_at)
SELECT l.id, c.id,
       (ARRAY['audit','verified','passed','failed']::enrollment_status[])[1 + (l.id + c.id) % 4],
       CASE WHEN (l.id + c.id) % 4 >= 2 THEN round(((l.id * 7 + c.id * 13) % 10000) / 100.0, 2) END,
       l.created_at + c.id * interval '1 day'
FROM learners l JOIN courses c ON (l.id + c.id) % 5 = 0;
INSERT INTO certificates (enrollment_id, hash, issued_at)
SELECT id, decode(md5(id::text), 'hex'), enrolled_at + interval '90 days'
FROM enrollments WHERE status = 'passed';
SELECT setval('invoice_number_seq', 100420);
ANALYZE;
